"""Forgetting users: the store afterwards answers as one that never saw them, and holds
no byte of their openids; a forget killed part-way leaves it before or after."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from userportrait.engine import get_engine
from userportrait.errors import InvalidRequest
from userportrait.ingest.pipeline import ingest_file
from userportrait.ingest.profiles import ingest_profiles_file
from userportrait.portrait.query import PortraitQuery
from userportrait.portrait.service import portrait
from userportrait.settings import Settings
from userportrait.store.forget import MAX_OPENIDS, forget
from userportrait.store.lake import Lake
from userportrait.synthetic.generate import GeneratorConfig, write_events, write_profiles

CONFIG = GeneratorConfig(users=500, days=8, end=dt.date(2026, 3, 31), apps=2, seed=11)
APP = CONFIG.appids[0]


def windows() -> list[tuple[dt.date, dt.date]]:
    end = CONFIG.end
    out = []
    for span in (1, 2, 3, 7, 8, 30):
        for back in (0, 1, 3, 5):
            e = end - dt.timedelta(days=back)
            out.append((e - dt.timedelta(days=span - 1), e))
    return out


def answers(lake: Lake, engine: str) -> list[Any]:
    eng = get_engine(engine, lake)
    try:
        return [portrait(PortraitQuery(a, b, e), eng) for a in CONFIG.appids for b, e in windows()]
    finally:
        eng.close()


def sources(tmp_path: Path) -> tuple[pa.Table, list[dict[str, Any]]]:
    src = tmp_path / "all.parquet"
    write_events(src, CONFIG)
    profiles = tmp_path / "profiles.ndjson"
    write_profiles(profiles, CONFIG)
    lines = profiles.read_text("utf-8").splitlines()
    return pq.read_table(src), [json.loads(line) for line in lines]


def build(
    root: Path, events: pa.Table, profiles: list[dict[str, Any]], rejects: list[dict[str, Any]]
) -> Lake:
    """A store of ``events`` in three batches (a day's users over several files), the
    profiles, and a file of records that are rejected."""
    lake = Lake(Settings(data_dir=root / "data", duckdb_memory_limit_mb=512))
    step = -(-events.num_rows // 3)
    for i in range(3):
        part = root / f"part{i}.parquet"
        pq.write_table(events.slice(i * step, step), part)
        ingest_file(lake, part)
    path = root / "profiles.ndjson"
    path.write_text("".join(json.dumps(p) + "\n" for p in profiles), "utf-8")
    ingest_profiles_file(lake, path)
    bad = root / "bad.ndjson"
    bad.write_text("".join(json.dumps(r) + "\n" for r in rejects), "utf-8")
    assert ingest_file(lake, bad).rejected == len(rejects)
    return lake


def forgotten_users(events: pa.Table) -> list[str]:
    ids = sorted(set(events.filter(pc.equal(events["appid"], APP))["openid"].to_pylist()))
    return ids[::9][:30]


def bad_records(users: list[str]) -> list[dict[str, Any]]:
    """Rejected records of forgotten users (of the app and of another) and of others."""
    return [
        {"appid": APP, "openid": users[0], "ts": "not a time"},
        {"appid": APP, "openid": users[1], "ts": "2026-03-30T10:00:00+08:00", "age": 999},
        {"appid": APP, "openid": "o_kept", "ts": "yesterday"},
    ]


def test_forget_answers_as_a_store_that_never_saw_them(tmp_path: Path) -> None:
    events, profiles = sources(tmp_path)
    users = forgotten_users(events)
    (tmp_path / "s1").mkdir()
    (tmp_path / "s2").mkdir()
    s1 = build(tmp_path / "s1", events, profiles, bad_records(users))
    before = answers(s1, "incremental")  # the state exists before the forget
    keep = pc.invert(
        pc.and_(pc.equal(events["appid"], APP), pc.is_in(events["openid"], pa.array(users)))
    )
    kept_profiles = [p for p in profiles if not (p["appid"] == APP and p["openid"] in users)]
    s2 = build(tmp_path / "s2", events.filter(keep), kept_profiles, bad_records(users)[2:])

    report = forget(s1, APP, [*users, "o_never_seen"])

    assert report.users == len(users)
    assert report.events == events.num_rows - events.filter(keep).num_rows
    assert report.profiles == len(profiles) - len(kept_profiles) > 0
    assert report.rejects == 2
    expected = answers(s2, "reference")
    assert answers(s2, "incremental") == expected
    assert answers(s1, "reference") == expected
    assert answers(s1, "incremental") == expected
    assert before != expected
    assert_no_trace(s1.root, users)
    # Nothing more to remove: a second forget changes nothing.
    again = forget(s1, APP, users)
    assert (again.users, again.events, again.batch_id) == (0, 0, None)
    assert answers(s1, "incremental") == expected


def assert_no_trace(root: Path, openids: list[str]) -> None:
    """No byte of any of ``openids`` under ``root``: Parquet read back row by row (its
    pages are compressed), every other file as bytes."""
    wanted = set(openids)
    needles = [o.encode() for o in openids]
    checked = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        assert not any(n in data for n in needles), path
        if path.suffix == ".parquet":
            for row in pq.read_table(path).to_pylist():
                assert not wanted.intersection(str(v) for v in row.values()), path
            checked += 1
    assert checked > 0


def test_forget_takes_at_most_the_limit(settings: Settings) -> None:
    lake = Lake(settings)
    with pytest.raises(InvalidRequest, match="at most 10000"):
        forget(lake, APP, [f"o{i}" for i in range(MAX_OPENIDS + 1)])
    with pytest.raises(InvalidRequest):
        forget(lake, APP, [])


KILL = """
import os, signal, sys
from pathlib import Path
from userportrait.settings import Settings
from userportrait.store import catalog, forget as forget_mod
from userportrait.store.lake import Lake
from userportrait.store.state import forgetting

where = sys.argv[2]
def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
if where == "before-commit":
    catalog.Catalog.commit_forget = die
elif where == "patching-state":  # every patched file written, not the manifest
    forgetting.publish = die
else:  # after the commit, before the old files go and the state is rebuilt
    real = catalog.Catalog.commit_forget
    def commit_then_die(self, *args, **kwargs):
        real(self, *args, **kwargs)
        die()
    catalog.Catalog.commit_forget = commit_then_die
lake = Lake(Settings(data_dir=Path(sys.argv[1]), duckdb_memory_limit_mb=512))
forget_mod.forget(lake, sys.argv[3], sys.argv[4:])
"""


@pytest.mark.parametrize("where", ["before-commit", "after-commit", "patching-state"])
def test_a_killed_forget_leaves_before_or_after(tmp_path: Path, where: str) -> None:
    events, profiles = sources(tmp_path)
    users = forgotten_users(events)
    (tmp_path / "s").mkdir()
    lake = build(tmp_path / "s", events, profiles, [])
    before = answers(lake, "reference")
    before_files = {f.path for f in lake.catalog.files()}
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    run = subprocess.run(
        [sys.executable, "-c", KILL, str(lake.root), where, APP, *users], env=env, check=False
    )
    assert run.returncode == -9
    if where == "before-commit":
        assert {f.path for f in lake.catalog.files()} == before_files
        assert answers(lake, "reference") == before
        assert answers(lake, "incremental") == before
        assert lake.collect_garbage() > 0  # the copies it wrote
        forget(lake, APP, users)  # run again, it finishes
    elif where == "after-commit":
        assert lake.collect_garbage() > 0  # the originals it had not deleted yet
    else:  # the state is the one before the forget: the catch-up rebuilds the app
        state = json.loads((lake.state_dir / "manifest.json").read_text())
        assert state["version"] < lake.catalog.version()
    after = answers(lake, "reference")
    assert after != before
    assert answers(lake, "incremental") == after
    assert_no_trace(lake.root / "events", users)
    assert_no_trace(lake.root / "state", users)


def test_forgetting_every_user_of_an_app_empties_it(lake: Lake) -> None:
    from tests.conftest import load
    from tests.fixtures import EVENTS

    load(lake, EVENTS)
    other = "wxb000000000000002"
    kept = lake.catalog.files("wxa000000000000001")
    assert answers_of(lake, other) != answers_of(lake, "nobody-app")
    report = forget(lake, other, ["u1"])
    assert (report.users, report.events) == (1, 1)
    assert lake.catalog.files(other) == []
    assert answers_of(lake, other) == answers_of(lake, "nobody-app")
    assert not (lake.state_dir / f"appid={other}").exists()
    assert lake.catalog.files("wxa000000000000001") == kept  # its u1 is another user


def answers_of(lake: Lake, appid: str) -> list[Any]:
    out = []
    for engine in ("incremental", "reference"):
        eng = get_engine(engine, lake)
        try:
            out.append(
                portrait(PortraitQuery(appid, dt.date(2024, 6, 4), dt.date(2024, 6, 12)), eng)
            )
        finally:
            eng.close()
    assert out[0] == out[1]
    return out
