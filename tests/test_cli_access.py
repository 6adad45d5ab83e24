"""CLI of the ways in: what it refuses, and that one-value commands end on their value."""

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
        (["apps", "allow-ip", "--appid", "wxa"], "give CIDR... or --clear"),
        (["apps", "allow-ip", "--appid", "wxa", "10.0.0.0/8", "--clear"], "give CIDR... or --clear"),
        (["apps", "allow-ip", "--appid", "wxa", "10.0.0.0/33"], "is not an IP address or CIDR"),
        (["apps", "security", "--appid", "wxa", "--aes-key", "x"], "give --aes-key, --aes-sn"),
        (["component", "ticket", "--component-appid", "wxnobody"], "not a registered component"),
        (["component", "add", "--component-appid", "wxc", "--secret", "short"], "at least 8"),
        (["component", "add", "--component-appid", "bad appid", "--secret", "long-enough"], "invalid appid"),
        (["component", "revoke", "--component-appid", "wxc", "--appid", "wxa"], "has not authorised"),
    ],
)  # fmt: skip
def test_refusals(tmp_path: Path, args: list[str], message: str) -> None:
    code, output = invoke(tmp_path, *args)
    assert code == 1 and message in output, output


def test_security_key_checks(tmp_path: Path) -> None:
    pem = tmp_path / "not-a-key.pem"
    pem.write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    base = ["apps", "security", "--appid", "wxa", "--aes-sn", "sn", "--public-key-sn", "psn",
            "--public-key", str(pem)]  # fmt: skip
    code, output = invoke(tmp_path, *base, "--aes-key", "c2hvcnQ=")
    assert code == 1 and "AES-256 needs 32" in output
    code, output = invoke(tmp_path, *base, "--aes-key", "A" * 43 + "=")
    assert code == 1 and "public key:" in output


def test_permissions_and_one_value_lines(tmp_path: Path) -> None:
    assert invoke(tmp_path, "component", "add", "--component-appid", "wxc", "--secret", "long-enough")[0] == 0  # fmt: skip
    code, output = invoke(tmp_path, "component", "authorize", "--component-appid", "wxc",
                          "--appid", "wxa", "--permissions", "1,x")  # fmt: skip
    assert code == 1 and "comma-separated set ids" in output
    code, output = invoke(tmp_path, "component", "authorize", "--component-appid", "wxc",
                          "--appid", "wxa", "--permissions", "18, 1")  # fmt: skip
    assert code == 0 and output.splitlines()[-1].startswith("queryauthcode@@@")
    code, output = invoke(tmp_path, "apps", "security", "--appid", "wxa", "--off")
    assert (code, output.strip()) == (0, "API-security mode off for wxa (it was not on)")
