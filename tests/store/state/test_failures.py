"""Issue 10, defect 1: no batch can take the store down.

A batch spanning decades costs memory in proportion to its days, not to the calendar
between them; a failed state update of one app never fails another app's answers, is
shown in ``/healthz`` and the log, is retried with back-off, and its app is answered
exactly from the lake meanwhile.
"""

from __future__ import annotations

import datetime as dt
import logging
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import load
from tests.server import asgi_client
from userportrait.engine import get_engine
from userportrait.portrait.query import PortraitQuery
from userportrait.portrait.service import portrait
from userportrait.settings import Settings
from userportrait.store import state as state_mod
from userportrait.store.lake import Lake
from userportrait.store.state import app_update, state_failures, state_version
from userportrait.store.state import manifest as state_manifest

A, B = "wxa000000000000001", "wxb000000000000002"
TODAY = dt.date(2026, 11, 29)


def ev(appid: str, openid: str, ts: Any, **extra: Any) -> dict[str, Any]:
    return {"appid": appid, "openid": openid, "ts": ts, **extra}


def answers(lake: Lake, engine: str, queries: list[PortraitQuery]) -> list[dict[str, Any]]:
    eng = get_engine(engine, lake)
    try:
        return [portrait(q, eng) for q in queries]
    finally:
        eng.close()


def window(appid: str, end: dt.date, n: int) -> PortraitQuery:
    return PortraitQuery(appid, end - dt.timedelta(days=n - 1), end)


DECADES = [
    ev(A, "o-zero", 0, province="广东", gender=1),
    ev(A, "o-zero", "2026-11-29T09:00:00+08:00", province="北京"),
    ev(A, "o-today", "2026-11-29T10:00:00+08:00", city="深圳", device="iPhone 13", age=30),
    ev(A, "o-far", "9999-12-30T12:00:00+08:00", platform="ios"),
    ev(B, "o-b", "2026-11-28T10:00:00+08:00", province="上海"),
]
DECADE_QUERIES = [
    window(A, dt.date(1970, 1, 1), 1),
    window(A, dt.date(1970, 1, 30), 30),
    window(A, TODAY, 7),
    window(A, TODAY, 30),
    window(A, dt.date(9999, 12, 30), 1),
    window(A, dt.date(9999, 12, 31), 30),
    PortraitQuery(A, dt.date(1970, 1, 1), dt.date(9999, 12, 31)),
    window(B, TODAY, 7),
    # Issue 27: filters and cross-tabs over decades (heads, and the walk beyond 366 days).
    PortraitQuery(A, dt.date(1970, 1, 1), dt.date(9999, 12, 31), by=("province", "platforms")),
    PortraitQuery(A, TODAY - dt.timedelta(days=29), TODAY, filters=(("province", 11),)),
    PortraitQuery(A, dt.date(9999, 12, 2), dt.date(9999, 12, 31), by=("genders", "devices"),
                  compare="previous"),
]  # fmt: skip


def test_a_batch_spanning_decades_costs_memory_by_its_days(lake: Lake) -> None:
    """ts 0, today and 9999 in one batch: far-past and far-future events are accepted and
    counted (docs/semantics.md); the state update stays small (it allocated days spanned x
    city ids before: 179 GiB) and every engine gives the same answers."""
    tracemalloc.start()
    try:
        report = load(lake, DECADES)
        got = answers(lake, "duckdb", DECADE_QUERIES)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (report.accepted, report.rejected) == (5, 0)
    assert state_failures(lake) == {}
    assert peak < 64 << 20, f"peak {peak >> 20} MiB"
    assert got == answers(lake, "reference", DECADE_QUERIES)
    assert got == answers(lake, "sql", DECADE_QUERIES)
    assert got[0]["visit_uv"]["province"] == [{"id": 44, "name": "广东省", "value": 1}]
    assert got[6]["visit_uv"]["genders"] == [
        {"id": 0, "name": "未知", "value": 2},
        {"id": 1, "name": "男", "value": 1},
    ]


@pytest.fixture
def broken_a(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """The state update of appid A fails (as a full disk or a bug would); B's works."""
    calls = {"A": 0}
    apply = app_update.AppUpdate.apply

    def failing(self: Any, days: set[str], progress: Any = None) -> Any:
        if self.appid == A:
            calls["A"] += 1
            if calls.get("healed"):
                return apply(self, days, progress) if progress else apply(self, days)
            raise RuntimeError("disk on fire\nsecond line")
        return apply(self, days, progress) if progress else apply(self, days)

    monkeypatch.setattr(app_update.AppUpdate, "apply", failing)
    monkeypatch.setattr(state_manifest, "RETRY_BACKOFF_S", 3600.0)
    return calls


BATCH = [
    ev(A, "a1", "2024-06-10T10:00:00+08:00", province="广东"),
    ev(A, "a2", "2024-06-11T10:00:00+08:00", gender=2),
    ev(B, "b1", "2024-06-10T10:00:00+08:00", province="上海"),
]
LATER = [ev(A, "a3", "2024-06-12T10:00:00+08:00"), ev(B, "b2", "2024-06-12T10:00:00+08:00")]
QUERIES = [window(a, dt.date(2024, 6, 12), n) for a in (A, B) for n in (1, 7, 30)]
QUERIES += [PortraitQuery(a, dt.date(2024, 6, 10), dt.date(2024, 6, 11)) for a in (A, B)]
# Issue 27: a stale app's filters and cross-tabs come from the lake too.
QUERIES += [
    PortraitQuery(a, dt.date(2024, 6, 10), dt.date(2024, 6, 12), filters=(("province", 44),),
                  compare="previous")
    for a in (A, B)
] + [PortraitQuery(a, dt.date(2024, 6, 6), dt.date(2024, 6, 12), by=("genders", "province"))
     for a in (A, B)]  # fmt: skip


def test_one_apps_failed_state_never_fails_another(
    lake: Lake, broken_a: dict[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="userportrait.state"):
        load(lake, BATCH)
        load(lake, LATER, name="later.ndjson")
    failure = state_failures(lake)
    assert list(failure) == [A]
    assert failure[A]["error"] == "RuntimeError: disk on fire"
    assert failure[A]["attempts"] == 1  # the second batch waits for the back-off
    assert failure[A]["days_pending"] == 3
    assert [r.levelname for r in caplog.records] == ["ERROR"]
    assert A in caplog.records[0].getMessage()
    # B from its state, A exactly from the lake: both equal the reference.
    assert answers(lake, "duckdb", QUERIES) == answers(lake, "reference", QUERIES)
    assert broken_a["A"] == 1  # queries do not retry before the back-off


def test_failed_app_is_retried_with_back_off(
    lake: Lake, broken_a: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    load(lake, BATCH)
    monkeypatch.setattr(state_manifest, "RETRY_BACKOFF_S", 0.0)
    eng = get_engine("duckdb", lake)
    try:
        portrait(QUERIES[0], eng)  # due: retried, fails again
        assert broken_a["A"] == 2
        assert state_failures(lake)[A]["attempts"] == 2
        broken_a["healed"] = 1
        load(lake, LATER, name="later.ndjson")  # the next writer retries too
        assert state_failures(lake) == {}
        got = [portrait(q, eng) for q in QUERIES]
    finally:
        eng.close()
    assert got == answers(lake, "reference", QUERIES)
    assert state_mod.StateStore(lake).manifest.apps[A].days.keys() == {
        "2024-06-10",
        "2024-06-11",
        "2024-06-12",
    }


def test_health_probes_parse_the_manifest_only_after_a_writer_replaced_it(
    lake: Lake, broken_a: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 30: the manifest grows with apps x days and /healthz, /metrics ask for the
    failures and the state's version every few seconds; they parse it once per version, not
    once per probe."""
    load(lake, BATCH)
    version = state_manifest.Manifest.read(lake.state_dir).version
    reads: list[Path] = []
    read = state_manifest.Manifest.read

    def counted(root: Path) -> state_manifest.Manifest:
        reads.append(root)
        return read(root)

    monkeypatch.setattr(state_manifest.Manifest, "read", counted)
    first = state_failures(lake)
    assert state_failures(lake) == first
    assert list(first) == [A] and first[A]["days_pending"] == 2
    assert state_version(lake) == version
    assert reads == [lake.state_dir]
    load(lake, LATER, name="later.ndjson")  # A's pending days grow: a new manifest
    reads.clear()
    assert state_failures(lake)[A]["days_pending"] == 3
    assert state_version(lake) == version + 1
    assert reads == [lake.state_dir]


@pytest.mark.anyio
async def test_healthz_shows_a_failed_state(settings: Settings, broken_a: dict[str, int]) -> None:
    lake = Lake(settings)
    load(lake, BATCH)
    async with asgi_client(settings) as c:
        body = (await c.get("/healthz")).json()
    assert body["status"] == "degraded"
    assert list(body["state_failures"]) == [A]
    assert body["state_failures"][A]["error"] == "RuntimeError: disk on fire"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_a_day_failing_mid_build_stops_the_builders_thread(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The builder runs a chunk ahead in a thread (``prefetch.py``): when writing a day
    fails, the thread stops before the builder's connection closes, the app is recorded
    as failed, and its answers come from the lake until the retry."""
    import threading

    monkeypatch.setattr(state_mod.partitions, "CHUNK_EVENTS", 1)  # a pass per day
    writes = {"n": 0}
    take = app_update.AppUpdate._take

    def failing_second(self: app_update.AppUpdate, part: Any, *args: Any) -> None:
        writes["n"] += 1
        if writes["n"] == 2:
            raise OSError("disk full")
        take(self, part, *args)

    monkeypatch.setattr(app_update.AppUpdate, "_take", failing_second)
    load(lake, [ev(A, f"o{i}", f"2026-11-{20 + i}T10:00:00+08:00") for i in range(5)])
    assert A in state_failures(lake)
    assert not [t for t in threading.enumerate() if t.name == "state-prefetch"]
    q = window(A, TODAY, 30)
    assert answers(lake, "incremental", [q]) == answers(lake, "duckdb", [q])


def test_a_day_file_failing_in_the_writer_thread_fails_the_update(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Day files are written by a thread beside the folding; its error fails the app's
    update like any other (nothing is published), and the lake answers meanwhile."""
    monkeypatch.setattr(state_mod.partitions, "CHUNK_EVENTS", 1)
    writes = {"n": 0}
    save_day = app_update.save_day

    def failing_third(path: Any, part: Any) -> None:
        writes["n"] += 1
        if writes["n"] == 3:
            raise OSError("disk full")
        save_day(path, part)

    monkeypatch.setattr(app_update, "save_day", failing_third)
    load(lake, [ev(A, f"o{i}", f"2026-11-{20 + i}T10:00:00+08:00") for i in range(5)])
    assert A in state_failures(lake)
    q = window(A, TODAY, 30)
    assert answers(lake, "incremental", [q]) == answers(lake, "duckdb", [q])
