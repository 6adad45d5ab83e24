"""``userportrait dashboard link``, ``dashboard admin-key`` and ``demo --no-serve`` (CliRunner)."""

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


def test_demo_prepares_reuses_and_prints(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    args = (
        "demo",
        "--data-dir",
        str(data),
        "--users",
        "1500",
        "--days",
        "8",
        "--port",
        "8123",
        "--no-serve",
    )
    first = run(*args)
    assert first.exit_code == 0, first.output
    out = first.output
    assert re.search(r"http://127\.0\.0\.1:8123/#code=[A-Za-z0-9_-]{32}", out)
    assert "AppID wx0000000000000001   AppSecret demo-secret" in out
    assert "/datacube/getweanalysisappiduserportrait?access_token=$T" in out
    key = re.search(r"IngestKey (upik_\S+)", out)
    assert key and AuthStore(data / "meta.sqlite").appid_for_ingest_key(key.group(1)) == (
        "wx0000000000000001"
    )
    assert f'/v1/events" -H "Authorization: Bearer {key.group(1)}" -d' in out
    assert [a for a, _ in AuthStore(data / "meta.sqlite").apps()] == [
        "wx0000000000000001", "wx0000000000000002"]  # fmt: skip
    assert not (data / "demo-events.parquet").exists()
    version = (
        (data / "lake" / "catalog.sqlite").stat().st_mtime if (data / "lake").exists() else None
    )
    again = run(*args)
    assert again.exit_code == 0 and "reused" in again.output
    if version is not None:
        assert (data / "lake" / "catalog.sqlite").stat().st_mtime == version
    # A directory that is not a demo's is never cleared.
    other = tmp_path / "mine"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    refused = run("demo", "--data-dir", str(other), "--no-serve")
    assert refused.exit_code == 1 and "not empty and not a demo directory" in refused.output
    assert (other / "keep.txt").exists()
