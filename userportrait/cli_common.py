"""What every CLI module shares: the data-dir option, settings from it, and ``fail``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.markup import escape

from userportrait.settings import Settings

err_console = Console(stderr=True)

DATA_DIR_OPTION = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Data directory [env USERPORTRAIT_DATA_DIR; default ~/.local/share/userportrait].",
)


def fail(message: str) -> NoReturn:
    """Print ``error: message`` to stderr and exit with status 1."""
    # escape: a message may hold brackets (``pip install 'userportrait[spark]'``)
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(1)


def make_settings(data_dir: Path | None, **overrides: Any) -> Settings:
    try:
        return Settings.from_env(data_dir=data_dir, **overrides)
    except ValueError as exc:
        fail(str(exc))
