"""``userportrait component …``: what it refuses, and that one-value commands end on their value."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from userportrait.cli import cli


def invoke(data_dir: Path, *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(cli, [*args, "--data-dir", str(data_dir)])
    return res.exit_code, res.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["component", "ticket", "--component-appid", "wxnobody"], "not a registered component"),
        (["component", "add", "--component-appid", "wxc", "--secret", "short"], "at least 8"),
        (["component", "add", "--component-appid", "bad appid", "--secret", "long-enough"], "invalid appid"),
        (["component", "revoke", "--component-appid", "wxc", "--appid", "wxa"], "has not authorised"),
    ],
)  # fmt: skip
def test_refusals(tmp_path: Path, args: list[str], message: str) -> None:
    code, output = invoke(tmp_path, *args)
    assert code == 1 and message in output, output


def test_permissions_and_the_code_alone_on_the_last_line(tmp_path: Path) -> None:
    assert invoke(tmp_path, "component", "add", "--component-appid", "wxc", "--secret", "long-enough")[0] == 0  # fmt: skip
    code, output = invoke(tmp_path, "component", "authorize", "--component-appid", "wxc",
                          "--appid", "wxa", "--permissions", "1,x")  # fmt: skip
    assert code == 1 and "comma-separated set ids" in output
    code, output = invoke(tmp_path, "component", "authorize", "--component-appid", "wxc",
                          "--appid", "wxa", "--permissions", "18, 1")  # fmt: skip
    assert code == 0 and output.splitlines()[-1].startswith("queryauthcode@@@")
