"""What the commands share (``cli/common.py``): one ``--engine``, one ``ServiceError`` handler."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import click

from userportrait.cli import cli, common
from userportrait.settings import SETTINGS


def commands(group: click.Group, path: str = "") -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        yield f"{path}{name}", command
        if isinstance(command, click.Group):
            yield from commands(command, f"{path}{name} ")


def test_every_engine_option_is_the_one_from_the_settings() -> None:
    helps = {
        name: param.help
        for name, command in commands(cli)
        for param in command.params
        if isinstance(param, click.Option) and "--engine" in param.opts
    }
    assert set(helps) == {"portrait", "serve"}
    assert set(helps.values()) == {f"{SETTINGS['engine']} [env USERPORTRAIT_ENGINE]"}


def test_no_command_catches_a_service_error_itself() -> None:
    """The group does it once (``common.Group``); ``parse_date_option`` turns one into a
    usage error (exit 2) instead."""
    package = Path(common.__file__).parent
    catches = []
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.ExceptHandler) and "ServiceError" in ast.unparse(
                node.type or node
            ):
                catches.append(path.name)
    assert catches == ["common.py", "common.py"]
