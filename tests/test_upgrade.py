"""Upgrades: the previous release's data directory opens and answers as it did; a newer
format is refused with nothing written (docs/storage.md, "Format changes").

``tests/upgrade/data`` was written by the previous release (e6db8a2) with
``scripts/make_upgrade_fixture.py``, and ``tests/upgrade/answers.json`` holds what that
release answered.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.server import asgi_client
from userportrait.cli import cli
from userportrait.settings import Settings
from userportrait.store.format import FORMAT, FORMAT_FILE, MIGRATIONS
from userportrait.store.lake import Lake

pytestmark = pytest.mark.anyio

FIXTURE = Path(__file__).parent / "upgrade"
ANSWERS: dict[str, Any] = json.loads((FIXTURE / "answers.json").read_text("utf-8"))
SECRETS = {"wxupgrade00000001": "first-secret-0001", "wxupgrade00000002": "second-secret-0002"}
ADMIN_KEY = "upgrade-admin-key-0001"


@pytest.fixture
def previous(tmp_path: Path) -> Path:
    """A copy of the previous release's data directory (0700, as that release left it)."""
    data = tmp_path / "data"
    shutil.copytree(FIXTURE / "data", data)
    data.chmod(0o700)
    return data


def test_the_fixture_is_of_format_0() -> None:
    assert not (FIXTURE / "data" / FORMAT_FILE).exists()
    assert ANSWERS["version"] == "0.1.0"


def test_migrations_run_from_1_to_format_in_order() -> None:
    assert [m.to for m in MIGRATIONS] == list(range(1, FORMAT + 1))


def test_a_new_data_directory_records_the_format(tmp_path: Path) -> None:
    Lake(Settings(data_dir=tmp_path / "new"))
    assert (tmp_path / "new" / FORMAT_FILE).read_text() == f"{FORMAT}\n"


def test_the_cli_answers_as_the_previous_release(previous: Path) -> None:
    runner = CliRunner()
    for appid, begin, end, answer in ANSWERS["portrait"]:
        args = ["portrait", "--data-dir", str(previous), "--appid", appid]
        res = runner.invoke(cli, [*args, "--begin", begin, "--end", end])
        assert res.exit_code == 0, res.output
        assert json.loads(res.output) == answer
    assert (previous / FORMAT_FILE).read_text() == f"{FORMAT}\n"


async def test_the_server_answers_as_the_previous_release(previous: Path) -> None:
    """Tokens from the old secrets, the datacube route (one app behind an allow-list, the
    other behind a threshold), the dashboard signed in with the old admin key."""
    async with asgi_client(Settings.from_env(data_dir=previous)) as c:
        for appid, begin, end, answer in ANSWERS["datacube"]:
            params = {"grant_type": "client_credential", "appid": appid, "secret": SECRETS[appid]}
            token = (await c.get("/cgi-bin/token", params=params)).json()["access_token"]
            res = await c.post(
                "/datacube/getweanalysisappiduserportrait",
                params={"access_token": token},
                json={"begin_date": begin, "end_date": end},
            )
            assert res.json() == answer
        res = await c.post("/dashboard/signin", json={"admin_key": ADMIN_KEY})
        assert res.json()["errcode"] == 0, res.text
        appid, begin, end, answer = ANSWERS["trend"]
        res = await c.get("/dashboard/trend", params={"appid": appid, "begin": begin, "end": end})
        assert res.json() == answer


def _snapshot(root: Path) -> dict[str, tuple[bytes | None, int, int]]:
    """Every path under ``root`` (and ``root``): its bytes (None for a directory), its mode
    and its modification time."""
    paths = [root, *sorted(root.rglob("*"))]
    return {
        str(p.relative_to(root)): (
            None if p.is_dir() else p.read_bytes(),
            p.stat().st_mode,
            p.stat().st_mtime_ns,
        )
        for p in paths
    }


def test_a_newer_format_is_refused_and_nothing_is_written(previous: Path, tmp_path: Path) -> None:
    (previous / FORMAT_FILE).write_text(f"{FORMAT + 1}\n")
    previous.chmod(0o755)  # a mode the opener would tighten: it must not
    before = _snapshot(previous)
    events = tmp_path / "events.ndjson"
    events.write_text('{"appid": "wxupgrade00000001", "openid": "o1", "ts": 1767139200}\n')
    message = (
        f"error: {previous}: this data directory was written by a newer userportrait (format "
        f"{FORMAT + 1}); this release reads up to format {FORMAT}; upgrade userportrait\n"
    )
    window = ["--appid", "wxupgrade00000001", "--begin", "20260110", "--end", "20260110"]
    commands = [
        ["portrait", *window],
        ["portrait", "--engine", "sql", *window],
        ["ingest", "-q", str(events)],
        ["compact"],
        ["apps", "list"],
        ["apps", "add", "--appid", "wxupgrade00000003", "--secret", "third-secret-0003"],
        ["apps", "threshold", "--appid", "wxupgrade00000001", "--k", "5"],
        ["apps", "allow-ip", "--appid", "wxupgrade00000001", "--clear"],
        ["dashboard", "admin-key"],
        ["serve", "--get", "/healthz"],
        ["serve", "--port", "0"],
    ]
    runner = CliRunner()
    for command in commands:
        res = runner.invoke(cli, [*command, "--data-dir", str(previous)])
        assert (res.exit_code, res.output) == (1, message), command
    assert _snapshot(previous) == before
