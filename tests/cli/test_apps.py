"""``userportrait apps …``: registration, keys, thresholds, API-security mode, allow-lists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.fixtures import A
from userportrait.auth.store import AuthStore
from userportrait.cli import cli


def run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return res.exit_code, res.output


def test_apps_lifecycle(tmp_path: Path) -> None:
    d = str(tmp_path / "data")
    code, out = run("apps", "add", "--appid", A, "--secret", "given-secret", "--data-dir", d)
    assert code == 0 and "given-secret" not in out
    code, out = run("apps", "add", "--appid", "wxgenerated01", "--data-dir", d)
    secret = re.search(r"shown once\): (\S+)", out)
    assert code == 0 and secret and len(secret.group(1)) >= 32
    store = AuthStore(tmp_path / "data" / "meta.sqlite")
    assert store.issue_token("wxgenerated01", secret.group(1)).expires_in == 7200
    code, out = run("apps", "list", "--data-dir", d)
    assert code == 0 and A in out and "wxgenerated01" in out
    assert "given-secret" not in out and secret.group(1) not in out
    assert run("apps", "add", "--appid", A, "--secret", "x" * 12, "--data-dir", d)[0] == 1
    old = store.issue_token(A, "given-secret").token
    code, out = run("apps", "rotate-secret", "--appid", A, "--data-dir", d)
    new = re.search(r"shown once\): (\S+)", out)
    assert code == 0 and new
    assert store.issue_token(A, new.group(1))
    assert_rejected(store, old)
    assert run("apps", "remove", "--appid", A, "--data-dir", d)[0] == 0
    assert run("apps", "remove", "--appid", A, "--data-dir", d)[0] == 1
    assert A not in run("apps", "list", "--data-dir", d)[1]


def test_apps_ingest_key_prints_the_key_alone_on_its_last_line(tmp_path: Path) -> None:
    d = str(tmp_path / "data")
    run("apps", "add", "--appid", A, "--secret", "given-secret", "--data-dir", d)
    code, out = run("apps", "ingest-key", "--appid", A, "--data-dir", d)
    first = out.splitlines()[-1]
    assert code == 0 and re.fullmatch(r"upik_[A-Za-z0-9_-]{43}", first), out
    store = AuthStore(tmp_path / "data" / "meta.sqlite")
    assert store.appid_for_ingest_key(first) == A
    code, out = run("apps", "ingest-key", "--appid", A, "--data-dir", d)
    second = out.splitlines()[-1]
    assert code == 0 and second != first and store.appid_for_ingest_key(second) == A
    from userportrait.errors import InvalidCredential

    with pytest.raises(InvalidCredential):
        store.appid_for_ingest_key(first)  # the previous key is retired
    code, out = run("apps", "ingest-key", "--appid", "wxnobody", "--data-dir", d)
    assert code == 1 and "wxnobody is not registered" in out


def assert_rejected(store: AuthStore, token: str) -> None:
    from userportrait.errors import InvalidCredential

    try:
        store.appid_for(token)
    except InvalidCredential:
        return
    raise AssertionError("old token still accepted")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["apps", "allow-ip", "--appid", "wxa"], "give CIDR... or --clear"),
        (["apps", "allow-ip", "--appid", "wxa", "10.0.0.0/8", "--clear"], "give CIDR... or --clear"),
        (["apps", "allow-ip", "--appid", "wxa", "10.0.0.0/33"], "is not an IP address or CIDR"),
        (["apps", "security", "--appid", "wxa", "--aes-key", "x"], "give --aes-key, --aes-sn"),
    ],
)  # fmt: skip
def test_refusals(tmp_path: Path, args: list[str], message: str) -> None:
    code, output = run(*args, "--data-dir", str(tmp_path))
    assert code == 1 and message in output, output


def test_security_key_checks(tmp_path: Path) -> None:
    pem = tmp_path / "not-a-key.pem"
    pem.write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    base = ["apps", "security", "--appid", "wxa", "--aes-sn", "sn", "--public-key-sn", "psn",
            "--public-key", str(pem)]  # fmt: skip
    code, output = run(*base, "--data-dir", str(tmp_path), "--aes-key", "c2hvcnQ=")
    assert code == 1 and "AES-256 needs 32" in output
    code, output = run(*base, "--data-dir", str(tmp_path), "--aes-key", "A" * 43 + "=")
    assert code == 1 and "public key:" in output


def test_security_off_when_it_was_not_on(tmp_path: Path) -> None:
    code, output = run("apps", "security", "--appid", "wxa", "--off", "--data-dir", str(tmp_path))
    assert (code, output.strip()) == (0, "API-security mode off for wxa (it was not on)")
