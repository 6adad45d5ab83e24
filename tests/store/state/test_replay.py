"""The replay (``store/state/replay.py``): after late events only the end days a change
reaches are replayed, and every window stays the reference answer."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.conftest import load
from tests.store.state.support import (
    D,
)
from userportrait.engine import get_engine
from userportrait.portrait.query import PortraitQuery
from userportrait.portrait.service import portrait
from userportrait.store.lake import Lake
from userportrait.store.state import STANDARD_LENGTHS, StateStore, day_number
from userportrait.store.state import replay as state_replay
from userportrait.store.state import spans as state_spans


def test_late_event_invalidates_windows_of_the_old_first_day(lake: Lake) -> None:
    a = "wxlate00000000001"
    base = [
        {"appid": a, "openid": "x", "ts": "2024-06-20T10:00:00+08:00", "gender": 1, "age": 20},
        {"appid": a, "openid": "y", "ts": "2024-06-01T10:00:00+08:00", "gender": 2},
        {"appid": a, "openid": "y", "ts": "2024-06-25T10:00:00+08:00"},
    ]
    load(lake, base, "a.ndjson")
    store = StateStore(lake)
    q = PortraitQuery(a, dt.date(2024, 6, 19), dt.date(2024, 6, 25))  # 7 days: x is new
    assert store.portrait_after_catch_up(q).new.ids["genders"] == {1: 1}
    # A late event on 06-05 (outside that window) makes x not new there; a late value for
    # y on 06-24 becomes y's latest gender, since y's 06-25 event carries none.
    load(
        lake,
        [
            {"appid": a, "openid": "x", "ts": "2024-06-05T10:00:00+08:00", "gender": 2},
            {"appid": a, "openid": "y", "ts": "2024-06-24T10:00:00+08:00", "gender": 1},
        ],
        "b.ndjson",
    )
    assert store.portrait_after_catch_up(q).new.normalized().ids["genders"] == {}
    ref = get_engine("reference", lake)
    for n in STANDARD_LENGTHS:
        for k in range(-5, 40):
            end = dt.date(2024, 6, 1) + D(k)
            q = PortraitQuery(a, end - D(n - 1), end)
            assert portrait(q, get_engine("duckdb", lake)) == portrait(q, ref), (n, end)


def test_late_events_for_yesterday_recount_only_theirstandard_windows(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Around midnight a flush carries events of the day before the newest: only the span
    # histograms of that day and the next change, replayed from the head kept before them.
    a = "wxmidnight000001"
    day = dt.date(2024, 6, 10)
    for k in range(12):
        d = day - D(11 - k)
        events = [{"appid": a, "openid": f"u{k % 5}", "ts": f"{d}T10:00:00+08:00",
                   "gender": 1 + k % 2, "age": 20 + k}]  # fmt: skip
        load(lake, events, f"d{k}.ndjson")

    def no_full_pass(*_args: object, **_kw: object) -> None:
        raise AssertionError("recounted every window")

    folded: list[int] = []
    fold = state_spans.SpanCounter.fold

    def counted(self: Any, head: Any, part: Any, first: Any, **kw: Any) -> None:
        folded.append(part.day)
        fold(self, head, part, first, **kw)

    # Replayed from the head kept for the day before yesterday: two days, no rebuild.
    monkeypatch.setattr(state_replay.Head, "from_days", no_full_pass)
    monkeypatch.setattr(state_spans.SpanCounter, "fold", counted)
    late = [{"appid": a, "openid": "u1", "ts": f"{day - D(1)}T23:00:00+08:00", "gender": 2},
            {"appid": a, "openid": "new", "ts": f"{day - D(1)}T23:30:00+08:00"}]  # fmt: skip
    load(lake, late, "late.ndjson")
    # update_state swallows errors (a reader catches up later): check it did not need to.
    assert StateStore(lake).manifest.version == lake.catalog.version()
    assert folded == [day_number(day - D(1)), day_number(day)]
    monkeypatch.undo()
    ref = get_engine("reference", lake)
    for n in STANDARD_LENGTHS:
        for end in (day - D(2), day - D(1), day):
            q = PortraitQuery(a, end - D(n - 1), end)
            assert portrait(q, get_engine("duckdb", lake)) == portrait(q, ref), (n, end)


def test_far_future_days_cost_a_later_ingest_no_state_file_each(lake: Lake) -> None:
    """Events on 40 distinct far-future days (legal: ts may reach 9999) must not make the
    app's every later ingest write one state file per such day (3,000 of them: ~76 s)."""
    appid = "wxa000000000000001"
    days = [dt.date(2100, 1, 1) + dt.timedelta(days=200 * k) for k in range(40)]
    load(lake, [{"appid": appid, "openid": f"o{k}", "ts": f"{d}T10:00:00+08:00"}
                for k, d in enumerate(days)], "future.ndjson")  # fmt: skip
    before = {p for p in lake.state_dir.rglob("*") if p.is_file()}
    load(
        lake, [{"appid": appid, "openid": "late", "ts": "2026-03-31T10:00:00+08:00"}], "now.ndjson"
    )
    written = {p for p in lake.state_dir.rglob("*") if p.is_file()} - before
    assert len(written) <= 10, sorted(p.name for p in written)


def test_a_first_day_moved_from_far_in_the_future_keeps_every_window_exact(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A later ingest moves users' first days from far-future days to now: the end days
    within a year after their old first days are replayed (after a run of skipped days
    longer than a year from the days before, after a shorter one through it), those no
    change reaches are left as they are, and every window is the reference answer."""
    a = "wxa000000000000001"
    f1 = dt.date(2100, 1, 1)
    far = {  # openid -> (day, gender)
        "y": (dt.date(2050, 1, 1), 1), "z": (f1 - D(214), 2), "u": (f1, 1),
        "q": (f1 + D(100), 2), "x": (f1 + D(400), 1), "w": (f1 + D(450), 2),
        "u2": (f1 + D(500), 2), "p": (f1 + D(900), 1),
    }  # fmt: skip
    events = [{"appid": a, "openid": o.rstrip("2"), "ts": f"{d}T10:00:00+08:00", "gender": g}
              for o, (d, g) in far.items()]  # fmt: skip
    events += [{"appid": a, "openid": f"n{k}", "ts": "2026-03-25T10:00:00+08:00"} for k in range(3)]
    load(lake, events, "far.ndjson")
    spans_before = dict(StateStore(lake).manifest.apps[a].spans)
    folded: list[dt.date] = []
    fold = state_spans.SpanCounter.fold

    def counted(self: Any, head: Any, part: Any, *args: Any, **kw: Any) -> None:
        folded.append(dt.date(1970, 1, 1) + D(int(part.day)))
        fold(self, head, part, *args, **kw)

    monkeypatch.setattr(state_spans.SpanCounter, "fold", counted)
    late = [
        {"appid": a, "openid": "u", "ts": "2026-03-31T09:00:00+08:00", "gender": 2},
        {"appid": a, "openid": "w", "ts": "2026-03-30T09:00:00+08:00", "gender": 1},
    ]
    load(lake, late, "late.ndjson")
    monkeypatch.undo()
    manifest = StateStore(lake).manifest
    assert manifest.version == lake.catalog.version()
    assert folded == [dt.date(2026, 3, 30), dt.date(2026, 3, 31), f1, f1 + D(100),
                      f1 + D(400), f1 + D(450), f1 + D(500)]  # fmt: skip
    for untouched in (dt.date(2050, 1, 1), f1 - D(214), f1 + D(900)):
        key = untouched.isoformat()
        assert manifest.apps[a].spans[key] == spans_before[key]
    store, ref = get_engine("incremental", lake), get_engine("reference", lake)
    ends = sorted({d + D(k) for d, _ in far.values() for k in (-1, 0, 1)})
    ends += [dt.date(2026, 3, 31), dt.date(2027, 3, 30), dt.date(2027, 3, 31)]
    for end in ends:
        for n in (1, 7, 30, 101, 366, 367):
            q = PortraitQuery(a, end - D(n - 1), end)
            assert portrait(q, store) == portrait(q, ref), (end, n)
