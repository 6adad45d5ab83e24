"""Issue 10, defects 6-8: what a crashed writer leaves, appids that would not round-trip
through the lake's directory names, and dates outside the usual years."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import load
from userportrait.engine import get_engine
from userportrait.ingest import pipeline
from userportrait.portrait.query import PortraitQuery
from userportrait.portrait.service import portrait
from userportrait.store.catalog import LakeFile
from userportrait.store.lake import Lake

A = "wxa000000000000001"


def ev(appid: str, openid: str, day: str = "2024-06-10") -> dict[str, Any]:
    return {"appid": appid, "openid": openid, "ts": f"{day}T10:00:00+08:00"}


def lake_files(lake: Lake) -> set[str]:
    return {str(p.relative_to(lake.root)) for p in lake.events_dir.rglob("*.parquet")}


def test_the_next_writer_removes_what_a_killed_ingest_left(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    load(lake, [ev(A, "u0")], name="first.ndjson")

    def killed(paths: Any, root: Path) -> None:
        raise KeyboardInterrupt  # as a kill during the move: files in events/, no commit

    monkeypatch.setattr(pipeline, "fsync_tree", killed)
    with pytest.raises(KeyboardInterrupt):
        load(lake, [ev(A, "u1", "2024-06-11"), ev(A, "u2", "2024-06-12")], name="killed.ndjson")
    monkeypatch.undo()
    assert len(lake_files(lake)) == 3  # two uncommitted
    assert lake.staging_dir.exists()
    load(lake, [ev(A, "u3")], name="next.ndjson")
    committed = {f.path for f in lake.catalog.files()}
    assert lake_files(lake) == committed and len(committed) == 2
    assert not any(lake.staging_dir.iterdir())


def test_retired_files_outlive_the_collection_until_their_grace_ends(lake: Lake) -> None:
    load(lake, [ev(A, "u0")], name="first.ndjson")
    (old,) = lake.catalog.files()
    new = LakeFile(old.path.replace(".parquet", "-compacted.parquet"), A, old.day, old.rows)
    (lake.root / new.path).write_bytes((lake.root / old.path).read_bytes())
    lake.catalog.replace_files(lake.catalog.next_batch_id(), "compaction", [old.path], [new])
    assert lake.collect_garbage() == 0
    assert lake_files(lake) == {old.path, new.path}
    assert lake.catalog.retired(before=time.time() + 1) == [old.path]


def test_a_reserved_partition_name_is_rejected_and_the_rest_counted(lake: Lake) -> None:
    events = [
        ev("__HIVE_DEFAULT_PARTITION__", "x1"),
        ev("__hive_default_partition__", "x2"),
        ev("..", "dots"),
        ev(A, "u1"),
    ]
    report = load(lake, events)
    assert (report.accepted, report.rejected) == (2, 2)
    reasons = {r.reason for r in report.rejects}
    assert reasons == {
        "appid __HIVE_DEFAULT_PARTITION__ is reserved (the Hive name of a missing value)"
    }
    assert sorted(lake.catalog.appids()) == ["..", A]
    eng = get_engine("duckdb", lake)
    try:
        for appid in ("..", A):
            body = portrait(PortraitQuery(appid, dt.date(2024, 6, 10), dt.date(2024, 6, 10)), eng)
            assert body["visit_uv"]["genders"] == [{"id": 0, "name": "未知", "value": 1}]
    finally:
        eng.close()
