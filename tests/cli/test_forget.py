"""``userportrait forget``: openids as arguments or in a file; refused while a server runs;
a WAL a stopped server left is loaded first."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from tests.cli.conftest import portrait_json
from tests.conftest import write_ndjson
from tests.fixtures import EVENTS, A
from userportrait.cli import cli
from userportrait.settings import Settings
from userportrait.store.lake import Lake, try_lock


def ingest(runner: CliRunner, tmp_path: Path, events: list[dict[str, object]]) -> None:
    res = runner.invoke(cli, ["ingest", "-q", str(write_ndjson(tmp_path / "e.ndjson", events))])
    assert res.exit_code == 0, res.output


def test_forget_prints_users_and_events_last(runner: CliRunner, tmp_path: Path) -> None:
    ingest(runner, tmp_path, EVENTS)
    (tmp_path / "ids.txt").write_text("u1\n\n u3 \nnobody\n", "utf-8")
    res = runner.invoke(cli, ["forget", "--appid", A, "u2", "--file", str(tmp_path / "ids.txt")])
    assert res.exit_code == 0, res.output
    # u1: 3 events of A (its event of the other app stays), u2: 2, u3: 2.
    assert res.output.splitlines()[-1] == "forgot 3 users, 7 events"
    forgotten = portrait_json(runner)
    fresh = CliRunner(env={"USERPORTRAIT_DATA_DIR": str(tmp_path / "fresh")})
    kept = [e for e in EVENTS if e["appid"] != A or e["openid"] not in ("u1", "u2", "u3")]
    ingest(fresh, tmp_path, kept)
    assert forgotten == portrait_json(fresh)
    other = Lake(Settings(data_dir=tmp_path / "data")).catalog.files("wxb000000000000002")
    assert sum(f.rows for f in other) == 1


def test_forget_needs_an_openid(runner: CliRunner) -> None:
    res = runner.invoke(cli, ["forget", "--appid", A])
    assert res.exit_code == 1
    assert "no openid given" in res.output


def test_forget_is_refused_while_a_server_runs(runner: CliRunner, tmp_path: Path) -> None:
    ingest(runner, tmp_path, EVENTS)
    wal = tmp_path / "data" / "wal"
    wal.mkdir()
    with try_lock(wal / "owner.lock") as mine:  # what a running server holds
        assert mine
        res = runner.invoke(cli, ["forget", "--appid", A, "u1"])
    assert res.exit_code == 1
    assert "a server is using this data directory; send it the forget (POST /v1/forget)" in (
        " ".join(res.output.split())
    )


def test_forget_loads_a_stopped_servers_wal_first(runner: CliRunner, tmp_path: Path) -> None:
    ingest(runner, tmp_path, EVENTS)
    wal = tmp_path / "data" / "wal"
    wal.mkdir()
    lines = [
        {"appid": A, "openid": "walked-in-9", "ts": "2024-06-11T10:00:00+08:00"},
        {"appid": A, "openid": "stays-0001", "ts": "2024-06-11T10:00:00+08:00"},
    ]
    (wal / "segment-000000000001.ndjson").write_text(
        "".join(json.dumps(x) + "\n" for x in lines) + '{"torn', "utf-8"
    )
    res = runner.invoke(cli, ["forget", "--appid", A, "walked-in-9"])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[-1] == "forgot 1 users, 1 events"
    assert list(wal.glob("segment-*")) == []
    data = tmp_path / "data"
    assert not [p for p in data.rglob("*") if p.is_file() and b"walked-in-9" in p.read_bytes()]
    rows = sum(f.rows for f in Lake(Settings(data_dir=data)).catalog.files(A))
    assert rows == sum(1 for e in EVENTS if e["appid"] == A) + 1
