"""The README's "Use" commands run as written (smaller), and answer non-empty portraits."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def use_commands() -> list[str]:
    """The ``userportrait`` lines of the README's "## Use" block, comments dropped."""
    text = README.read_text("utf-8")
    block = re.search(r"## Use\n\n```bash\n(.*?)```", text, re.S)
    assert block, "README.md has no Use block"
    lines = [line.split("  #")[0].strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line.startswith("userportrait ")]


def test_the_readme_use_block_runs_as_written(tmp_path: Path) -> None:
    commands = use_commands()
    assert any(c.startswith("userportrait generate") for c in commands)
    env = {**os.environ, "USERPORTRAIT_DATA_DIR": str(tmp_path / "data"),
           "USERPORTRAIT_DUCKDB_MEMORY_LIMIT_MB": "512"}  # fmt: skip
    for command in commands:
        argv = shlex.split(command.replace("--users 50000", "--users 2000"))
        out = None
        if ">" in argv:  # a redirection: write the output where the README says
            out = tmp_path / argv[argv.index(">") + 1]
            argv = argv[: argv.index(">")]
        res = subprocess.run([sys.executable, "-m", "userportrait", *argv[1:], "-q"]
                             if argv[1] in ("generate", "ingest") else
                             [sys.executable, "-m", "userportrait", *argv[1:]],
                             cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=300)  # fmt: skip
        assert res.returncode == 0, (command, res.stdout[-500:], res.stderr[-2000:])
        if out is not None:
            out.write_text(res.stdout, "utf-8")
        if argv[1] == "portrait" and "--format" not in argv:
            body = json.loads(res.stdout)
            assert all(body["visit_uv"][dim] for dim in body["visit_uv"]), command
    assert (tmp_path / "portrait.csv").read_text("utf-8").startswith("\ufeffref_date,")


@pytest.mark.parametrize("command", use_commands())
def test_each_use_command_is_a_real_command(command: str) -> None:
    from click.testing import CliRunner

    from userportrait.cli import cli

    argv = shlex.split(command)[1:]
    argv = argv[: argv.index(">")] if ">" in argv else argv
    sub = argv[0]
    res = CliRunner().invoke(cli, [sub, "--help"])
    assert res.exit_code == 0, res.output
