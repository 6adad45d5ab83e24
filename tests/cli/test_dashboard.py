"""``userportrait dashboard link`` and ``dashboard admin-key`` (CliRunner)."""

from __future__ import annotations

import re
import stat
from pathlib import Path

from click.testing import CliRunner, Result

from userportrait.auth.store import AuthStore
from userportrait.cli import cli
from userportrait.dashboard.sessions import SessionStore


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_link_is_one_time_and_for_registered_apps(tmp_path: Path) -> None:
    data = tmp_path / "data"
    res = run(
        "dashboard", "link", "--appid", "wxa1", "--base-url", "http://h:1", "--data-dir", str(data)
    )
    assert res.exit_code == 1 and "wxa1 is not registered" in res.output
    AuthStore(data / "meta.sqlite").add_app("wxa1", "secret-secret")
    res = run(
        "dashboard", "link", "--appid", "wxa1", "--base-url", "http://h:1/", "--data-dir", str(data)
    )
    match = re.fullmatch(r"http://h:1/#code=([A-Za-z0-9_-]{32})\n", res.output)
    assert match, res.output
    store = SessionStore(data)
    assert store.redeem(match.group(1)) == "wxa1"


def test_admin_key_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    res = run("dashboard", "admin-key", "--set", "short", "--data-dir", str(data))
    assert res.exit_code == 1 and "at least 12 characters" in res.output
    res = run("dashboard", "admin-key", "--data-dir", str(data))
    key = res.output.strip().rsplit(" ", 1)[1]
    path = data / "dashboard-admin-key"
    assert path.read_text() == key + "\n" and stat.S_IMODE(path.stat().st_mode) == 0o600
    SessionStore(data).check_admin_key(key)
