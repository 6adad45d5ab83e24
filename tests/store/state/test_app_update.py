"""One app's update (``store/state/app_update.py``): any order of ingests gives the
answers of a full load.

Checked against a fresh rebuild of the state, the reference engine and the ``sql`` engine,
for 1/7/30-day and odd windows; late events that make users not-new and change latest
values; duplicate files; a second appid; a reader that stays open while another writer
ingests; the newest day grown by live flushes through its overlay.
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import load
from tests.store.state.support import (
    CONFIG,
    END,
    START,
    D,
    all_standard,
    answers,
    late_events,
    standard_windows,
)
from userportrait.engine import get_engine
from userportrait.ingest.pipeline import ingest_file
from userportrait.portrait.query import PortraitQuery
from userportrait.portrait.service import portrait
from userportrait.settings import Settings
from userportrait.store.lake import Lake
from userportrait.store.state import STANDARD_LENGTHS, StateStore, app_update, day_number
from userportrait.store.state import partitions as state_partitions
from userportrait.store.state import spans as state_spans
from userportrait.store.state.folding import fold_overlays


@pytest.mark.parametrize("build", ["whole days", "sliced"])
def test_day_by_day_out_of_order_equals_full_load(
    generated: tuple[Path, list[Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, build: str
) -> None:
    slices: list[int] = []
    if build == "sliced":  # a chunk per day, each too large for a pass: slices of users
        monkeypatch.setattr(state_partitions, "CHUNK_EVENTS", 1)
        monkeypatch.setattr(state_partitions, "MAX_SLICES", 3)
        regrow = state_spans.SpanCounter.regrow

        def second_slice(self: state_spans.SpanCounter, *args: Any) -> None:
            slices.append(self.day)
            regrow(self, *args)

        monkeypatch.setattr(state_spans.SpanCounter, "regrow", second_slice)
    src, day_files = generated
    settings = Settings(data_dir=tmp_path / "inc", duckdb_memory_limit_mb=256)
    lake = Lake(settings)
    reader = get_engine("duckdb", lake)  # open before any data, like a long-running server
    order = list(day_files[:-1])
    random.Random(3).shuffle(order)
    # Group the shuffled days into a few batches (one ingest each) to keep the test quick;
    # the newest day comes alone at the end (the append path of the store).
    groups = [order[i::6] for i in range(6)] + [[day_files[-1]]]
    for i, group in enumerate(groups):
        merged = tmp_path / f"batch{i}.parquet"
        pq.write_table(pa.concat_tables([pq.read_table(p) for p in group]), merged)
        ingest_file(lake, merged)
        if i == 2:  # the open reader sees every committed batch
            q = PortraitQuery(CONFIG.appids[0], END - D(29), END)
            assert portrait(q, reader) == portrait(q, get_engine("sql", lake))
    sql = get_engine("sql", lake)
    for n in STANDARD_LENGTHS:  # windows the append path wrote
        q = PortraitQuery(CONFIG.appids[0], END - D(n - 1), END)
        assert portrait(q, reader) == portrait(q, sql), n
    load(lake, late_events(), "late.ndjson")
    # A duplicate of a day in another format: new file hash, identical events.
    dup = tmp_path / "dup.csv"
    _write_csv(pq.read_table(day_files[-1]), dup)
    assert ingest_file(lake, dup).accepted > 0

    full_settings = Settings(data_dir=tmp_path / "full", duckdb_memory_limit_mb=256)
    full = Lake(full_settings)
    ingest_file(full, src)
    load(full, late_events(), "late.ndjson")
    ingest_file(full, dup)

    windows = standard_windows()
    expected = answers(full, "reference", windows)
    assert answers(lake, "duckdb", windows) == expected
    assert (
        portrait(PortraitQuery(CONFIG.appids[1], END - D(6), END), reader)
        == expected[len(windows) + 1]
    )
    incremental = all_standard(lake)
    assert incremental == all_standard(full)
    assert (len(slices) > CONFIG.days) == (build == "sliced")
    StateStore(lake).rebuild()
    assert all_standard(lake) == incremental
    # The sql engine agrees on every standard window of one appid (spot check of the table).
    for n in STANDARD_LENGTHS:
        for k in range(0, CONFIG.days + 30, 3):
            end = START + D(k)
            q = PortraitQuery(CONFIG.appids[0], end - D(n - 1), end)
            assert (
                sql.run_portrait(q).new.normalized()
                == incremental[(CONFIG.appids[0], n, k)].new.normalized()
            ), (n, end)


def _write_csv(table: pa.Table, path: Path) -> None:
    import pyarrow.csv as pcsv

    pcsv.write_csv(table, path)


def test_appended_days_with_gaps_age_values_out_ofstandard_windows(lake: Lake) -> None:
    # Each load is a new newest day (the append path through the head): gaps of 1, 6, 29,
    # 30 and 400 days move every age; a value older than the window must become 未知.
    a = "wxgaps0000000001"
    ref = get_engine("reference", lake)
    day = dt.date(2023, 1, 1)
    for i, gap in enumerate([0, 1, 6, 29, 30, 400, 1]):
        day += D(gap)
        events = [
            {"appid": a, "openid": "steady", "ts": f"{day}T09:00:00+08:00"},
            {"appid": a, "openid": f"u{i}", "ts": f"{day}T10:00:00+08:00", "gender": 1 + i % 2,
             "device": f"M{i}", "city": "深圳" if i % 2 else "广州"},
        ]  # fmt: skip
        if i == 0:
            events.append({"appid": a, "openid": "steady", "ts": f"{day}T08:00:00+08:00",
                           "gender": 2, "age": 30, "province": "西藏"})  # fmt: skip
        load(lake, events, f"d{i}.ndjson")
        for n in STANDARD_LENGTHS:
            q = PortraitQuery(a, day - D(n - 1), day)
            assert portrait(q, get_engine("duckdb", lake)) == portrait(q, ref), (day, n)


@pytest.mark.parametrize("folds", ["never", "by the flush", "by the folder", "sliced"])
def test_more_events_for_the_newest_day_equal_a_fresh_load(
    lake: Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, folds: str
) -> None:
    # Live flushes: the newest day grows batch by batch, each batch's winners merged into
    # the day through its overlay (a flush costs its batch), folded into the
    # day's files when it outgrows its limit (2 users: nearly every flush; by the flush
    # itself past OVERLAY_USERS_MAX, or by the server's folder after the flush) and when
    # the next day comes. Later events override values, earlier ones must not, equal times
    # go to the larger id or device name whichever batch holds them, users gain values and
    # appear; a retried event (same event_id) counts once. Every window equals a fresh load.
    merged: list[int] = []
    grow = app_update.AppUpdate._grow_newest

    def counted(self: Any, t: int, progress: Any) -> None:
        merged.append(t)
        grow(self, t, progress)

    monkeypatch.setattr(app_update.AppUpdate, "_grow_newest", counted)
    if folds == "sliced":  # each batch too large for a pass: built in slices of users
        monkeypatch.setattr(state_partitions, "CHUNK_EVENTS", 1)
        monkeypatch.setattr(state_partitions, "MAX_SLICES", 3)
    monkeypatch.setattr(app_update, "OVERLAY_USERS_MAX", 2 if folds == "by the flush" else 99)
    a = "wxgrow0000000001"
    day = dt.date(2024, 6, 10)

    def ev(user: str, hh: int, **fields: Any) -> dict[str, Any]:
        return {"appid": a, "openid": user, "ts": f"{day}T{hh:02d}:00:00+08:00", **fields}

    batches = [
        [ev("old", 9, gender=1, city="广州", device="A1")],  # a day before: see below
        [ev("u1", 10, gender=1, device="M1"), ev("u2", 10), ev("u3", 12, age=30)],
        [ev("u1", 11, gender=2), ev("u2", 9, platform="ios"), ev("u3", 8, age=50)],
        [ev("u4", 23, city="深圳", event_id="e1"), ev("u1", 9, device="Z9")],
        [ev("u4", 23, city="深圳", event_id="e1"), ev("old", 13, province="西藏")],
        [ev("u5", 14, device="Bbb", gender=1, age=20), ev("u6", 14, device="Aaa", gender=2)],
        [ev("u5", 14, device="Aaa", gender=2, age=19), ev("u6", 14, device="Bbb", gender=1)],
    ]
    batches[0][0]["ts"] = f"{day - D(3)}T09:00:00+08:00"
    fresh = Lake(Settings(data_dir=tmp_path / "fresh"))

    def sameanswers(ends: tuple[dt.date, ...]) -> None:
        for n in (*STANDARD_LENGTHS, 2, 90, 400):  # 400: from the day partitions
            for end in ends:
                q = PortraitQuery(a, end - D(n - 1), end)
                grown = portrait(q, get_engine("duckdb", lake))
                assert grown == portrait(q, get_engine("duckdb", fresh)), (n, end)
                assert grown == portrait(q, get_engine("reference", lake)), (n, end)

    folded = []
    for i, batch in enumerate(batches):
        load(lake, batch, f"b{i}.ndjson")
        if folds == "by the folder":
            folded += fold_overlays(lake, limit=2)
    load(fresh, [e for b in batches for e in b], "all.ndjson")
    assert merged == [day_number(day)] * 5  # every batch after the day's first one
    assert len(folded) == (2 if folds == "by the folder" else 0)  # after batches 2 and 4
    if folds == "never":
        assert StateStore(lake).manifest.apps[a].overlay  # the day's files as first written
    sameanswers((day, day + D(1), day - D(1)))
    # The next day folds the overlay into the day's files first.
    nxt = [ev("u1", 10, gender=1), ev("u7", 11, city="深圳")]
    for e in nxt:
        e["ts"] = e["ts"].replace(str(day), str(day + D(1)))
    load(lake, nxt, "next.ndjson")
    load(fresh, nxt, "next.ndjson")
    assert not StateStore(lake).manifest.apps[a].overlay
    sameanswers((day, day + D(1), day + D(2)))


def test_any_window_is_the_reference_answer_afterlate_events(
    generated: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    """Random spans of 1-366 days (the lookup) and beyond (the day partitions), ending
    inside, before and after the data, after late events: the answer of the sql engine
    (itself checked against the reference), and of the reference for a few."""
    src, _ = generated
    lake = Lake(Settings(data_dir=tmp_path / "any", duckdb_memory_limit_mb=256))
    ingest_file(lake, src)
    load(lake, late_events(), "late.ndjson")
    rng = random.Random(11)
    spans = [1, 2, 7, 13, 30, 31, 90, 366, 367, 400]
    windows = [(END - D(rng.randint(-3, 45)), rng.choice(spans)) for _ in range(8)]
    queries = [PortraitQuery(a, end - D(n - 1), end) for a in CONFIG.appids for end, n in windows]
    store, sql, ref = (get_engine(e, lake) for e in ("incremental", "sql", "reference"))
    for i, q in enumerate(queries):
        assert portrait(q, store) == portrait(q, sql if i % 8 else ref), q
