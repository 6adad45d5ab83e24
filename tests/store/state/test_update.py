"""The incremental store (issue 5): any order of ingests gives the answers of a full load.

Checked against a fresh rebuild of the state, the reference engine and the ``sql`` engine,
for 1/7/30-day and odd windows; late events that make users not-new and change latest
values; duplicate files; a second appid; a crash between lake commit and state update; a
reader that stays open while another writer ingests.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.conftest import load
from userportrait.engine import get_engine
from userportrait.ingest import pipeline
from userportrait.ingest.pipeline import ingest_file
from userportrait.portrait.query import PortraitQuery
from userportrait.portrait.service import portrait
from userportrait.settings import Settings
from userportrait.store import state as state_mod
from userportrait.store.lake import Lake
from userportrait.store.state import STANDARD_LENGTHS, StateStore, day_number
from userportrait.store.state import partitions as state_partitions
from userportrait.store.state import spans as state_spans
from userportrait.store.state import update as state_update
from userportrait.store.state.folding import fold_overlays
from userportrait.synthetic.generate import GeneratorConfig, write_events

CONFIG = GeneratorConfig(users=1200, days=40, end=dt.date(2026, 3, 31), apps=2, seed=5)
END, START = CONFIG.end, CONFIG.start
D = dt.timedelta


def _windows() -> list[tuple[dt.date, dt.date]]:
    out = [(END - D(n - 1), END) for n in STANDARD_LENGTHS]
    out += [(END - D(20), END - D(10)), (START, START + D(3)), (START - D(3), START + D(29))]
    out += [(END - D(2), END + D(4)), (START + D(12), START + D(12))]
    return out


def _answers(lake: Lake, engine: str, windows: list[tuple[dt.date, dt.date]]) -> list[Any]:
    eng = get_engine(engine, lake)
    try:
        return [portrait(PortraitQuery(a, b, e), eng) for a in CONFIG.appids for b, e in windows]
    finally:
        eng.close()


def _all_standard(lake: Lake) -> dict[tuple[str, int, int], Any]:
    """Every 1/7/30-day window ending on every day from START to END + 30, per appid."""
    store = StateStore(lake)
    out = {}
    for appid in CONFIG.appids:
        for n in STANDARD_LENGTHS:
            for k in range(CONFIG.days + 30):
                end = START + D(k)
                q = PortraitQuery(appid, end - D(n - 1), end)
                out[(appid, n, k)] = store.portrait(q)
    return out


def _split_days(src: Path, out: Path) -> list[Path]:
    """One Parquet file per Shanghai day of ``src`` (the generator writes ts in UTC)."""
    table = pq.read_table(src)
    shanghai = pc.assume_timezone(
        pc.local_timestamp(table.column("ts").cast(pa.timestamp("ms", tz="Asia/Shanghai"))),
        "UTC",
    )
    days = pc.floor_temporal(shanghai, unit="day").cast(pa.timestamp("ms")).cast(pa.date32())
    table = table.append_column("_day", days)
    files = []
    for day in sorted(set(days.to_pylist())):
        part = table.filter(pc.equal(table.column("_day"), pa.scalar(day, pa.date32())))
        path = out / f"{day.isoformat()}.parquet"
        pq.write_table(part.drop_columns(["_day"]), path)
        files.append(path)
    return files


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("inc")
    src = root / "all.parquet"
    write_events(src, CONFIG)
    (root / "days").mkdir()
    return src, _split_days(src, root / "days")


def _late_events() -> list[dict[str, Any]]:
    """Late events on early days for users first seen later, with new latest values."""
    a, b = CONFIG.appids
    early = (START + D(3)).isoformat()
    late = (END - D(1)).isoformat()
    return [
        # o000000001.. exist in the data; these make some of them not-new and move them.
        {"appid": a, "openid": f"o{u:09d}", "ts": f"{early}T08:00:00+08:00", "city": "深圳"}
        for u in range(0, 1200, 37)
    ] + [
        {"appid": b, "openid": f"o{u:09d}", "ts": f"{late}T23:59:59+08:00", "gender": "f",
         "platform": "ohos", "device": "ZZZ Phone", "age": 70, "province": "西藏"}
        for u in range(0, 1200, 41)
    ] + [{"appid": a, "openid": "brand-new", "ts": f"{START - D(10)}T12:00:00+08:00"}]  # fmt: skip


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
    load(lake, _late_events(), "late.ndjson")
    # A duplicate of a day in another format: new file hash, identical events.
    dup = tmp_path / "dup.csv"
    _write_csv(pq.read_table(day_files[-1]), dup)
    assert ingest_file(lake, dup).accepted > 0

    full_settings = Settings(data_dir=tmp_path / "full", duckdb_memory_limit_mb=256)
    full = Lake(full_settings)
    ingest_file(full, src)
    load(full, _late_events(), "late.ndjson")
    ingest_file(full, dup)

    windows = _windows()
    expected = _answers(full, "reference", windows)
    assert _answers(lake, "duckdb", windows) == expected
    assert (
        portrait(PortraitQuery(CONFIG.appids[1], END - D(6), END), reader)
        == expected[len(windows) + 1]
    )
    incremental = _all_standard(lake)
    assert incremental == _all_standard(full)
    assert (len(slices) > CONFIG.days) == (build == "sliced")
    StateStore(lake).rebuild()
    assert _all_standard(lake) == incremental
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
    assert store.portrait(q).new.ids["genders"] == {1: 1}
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
    assert store.portrait(q).new.normalized().ids["genders"] == {}
    ref = get_engine("reference", lake)
    for n in STANDARD_LENGTHS:
        for k in range(-5, 40):
            end = dt.date(2024, 6, 1) + D(k)
            q = PortraitQuery(a, end - D(n - 1), end)
            assert portrait(q, get_engine("duckdb", lake)) == portrait(q, ref), (n, end)


def test_state_catches_up_after_crash_between_commit_and_update(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = "wxcrash0000000001"
    load(lake, [{"appid": a, "openid": "u1", "ts": "2024-06-10T10:00:00+08:00"}], "a.ndjson")
    version = StateStore(lake).manifest.version

    def crash(_lake: Lake, _progress: object = None) -> None:
        raise SystemExit("killed after the lake commit")

    monkeypatch.setattr(pipeline, "update_state", crash)
    with pytest.raises(SystemExit):
        load(lake, [{"appid": a, "openid": "u2", "ts": "2024-06-11T10:00:00+08:00",
                     "gender": 2}], "b.ndjson")  # fmt: skip
    monkeypatch.undo()
    assert lake.catalog.version() > version
    assert StateStore(lake).manifest.version == version  # the state lags the lake
    # Half-written files of the crashed update are ignored and replaced.
    (StateStore(lake).app_dir(a) / "days" / "2024-06-11.b99.npz.tmp").write_bytes(b"junk")
    q = PortraitQuery(a, dt.date(2024, 6, 5), dt.date(2024, 6, 11))
    body = portrait(q, get_engine("duckdb", lake))
    assert body == portrait(q, get_engine("reference", lake))
    assert body["visit_uv"]["genders"] == [  # type: ignore[index]
        {"id": 0, "name": "未知", "value": 1},
        {"id": 2, "name": "女", "value": 1},
    ]
    assert StateStore(lake).manifest.version == lake.catalog.version()
    assert not list(lake.state_dir.rglob("*.tmp"))


def test_events_find_their_uids_by_hash_or_by_openid_alike(
    generated: tuple[Path, list[Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build of many passes joins the events to their users on the openid's hash when no
    two users share one, else on the openid (a collision cannot be made here: forced)."""
    monkeypatch.setattr(state_partitions, "CHUNK_EVENTS", 1)  # a pass per day
    monkeypatch.setattr(state_partitions, "MAX_SLICES", 1)
    hashed: list[bool] = []
    check = state_partitions.PartitionBuilder._hash_uids

    def recorded(self: state_partitions.PartitionBuilder) -> bool:
        hashed.append(check(self))
        return hashed[-1]

    monkeypatch.setattr(state_partitions.PartitionBuilder, "_hash_uids", recorded)
    src, _ = generated
    lake = Lake(Settings(data_dir=tmp_path / "d", duckdb_memory_limit_mb=256))
    ingest_file(lake, src)
    assert hashed and all(hashed)  # (one build per appid)
    by_hash = _all_standard(lake)
    monkeypatch.setattr(state_partitions.PartitionBuilder, "_hash_uids", lambda _self: False)
    StateStore(lake).rebuild()
    assert _all_standard(lake) == by_hash


def test_a_day_in_one_join_writes_what_the_match_writes(
    generated: tuple[Path, list[Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A day added (one day, one pass) joins its events to the user dictionary once and
    numbers the misses; the larger builds' path matches the users first. The state files
    of the two are the same, bit for bit, new users (in no order in the file) included."""
    _, day_files = generated
    before = tmp_path / "before.parquet"
    pq.write_table(pa.concat_tables([pq.read_table(p) for p in day_files[:-1]]), before)
    last = pq.read_table(day_files[-1])
    strangers = last.slice(0, 60)
    ids = [f"new-{i:03d}" for i in random.Random(4).sample(range(60), 60)]
    strangers = strangers.set_column(
        strangers.schema.get_field_index("openid"), "openid", pa.array(ids)
    )
    newest = tmp_path / "newest.parquet"
    pq.write_table(pa.concat_tables([last, strangers]), newest)
    roots = [tmp_path / "one-join", tmp_path / "matched"]
    ingest_file(Lake(Settings(data_dir=roots[0], duckdb_memory_limit_mb=256)), before)
    shutil.copytree(roots[0], roots[1])
    matched: list[int] = []
    match = state_partitions.PartitionBuilder._match_users

    def counted(self: state_partitions.PartitionBuilder, *args: Any) -> None:
        matched.append(1)
        match(self, *args)

    monkeypatch.setattr(state_partitions.PartitionBuilder, "_match_users", counted)
    ingest_file(Lake(Settings(data_dir=roots[0], duckdb_memory_limit_mb=256)), newest)
    assert not matched
    monkeypatch.setattr(state_partitions, "CHUNK_EVENTS", 1)  # too large for one join ...
    monkeypatch.setattr(state_partitions, "MAX_SLICES", 1)  # ... and still one pass
    ingest_file(Lake(Settings(data_dir=roots[1], duckdb_memory_limit_mb=256)), newest)
    assert matched
    day = END.isoformat()
    met: set[str] = set()
    for appid in CONFIG.appids:
        dirs = [state_update.app_dir(r / "state", appid) for r in roots]
        apps = [state_mod.Manifest.read(r / "state").apps[appid] for r in roots]
        assert apps[0] == apps[1]
        app = apps[0]
        assert app.first_day is not None
        for name in (app.days[day], app.keys[day], app.heads[day], app.spans[day], app.first_day):
            assert (dirs[0] / name).read_bytes() == (dirs[1] / name).read_bytes(), name
        users = [
            sorted(
                (str(o), int(u))
                for f in app.users
                for o, u in zip(*pq.read_table(d / f).to_pydict().values(), strict=True)
            )
            for d in dirs
        ]
        assert users[0] == users[1]
        met |= {o for o, _ in users[0]}
    assert set(ids) <= met


def test_deleted_state_is_rebuilt_from_the_lake(lake: Lake) -> None:
    a = "wxgone0000000001"
    load(lake, [{"appid": a, "openid": "u1", "ts": "2024-06-10T10:00:00+08:00", "age": 30}])
    shutil.rmtree(lake.state_dir)
    q = PortraitQuery(a, dt.date(2024, 6, 10), dt.date(2024, 6, 10))
    assert get_engine("duckdb", lake).run_portrait(q).active.ids["ages"] == {4: 1}
    assert day_number("1970-01-02") == 1


def test_appended_days_with_gaps_age_values_out_of_windows(lake: Lake) -> None:
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
    # the day through its overlay (issue 14: a flush costs its batch), folded into the
    # day's files when it outgrows its limit (2 users: nearly every flush; by the flush
    # itself past OVERLAY_USERS_MAX, or by the server's folder after the flush) and when
    # the next day comes. Later events override values, earlier ones must not, equal times
    # go to the larger id or device name whichever batch holds them, users gain values and
    # appear; a retried event (same event_id) counts once. Every window equals a fresh load.
    merged: list[int] = []
    grow = state_update.AppUpdate._grow_newest

    def counted(self: Any, t: int, progress: Any) -> None:
        merged.append(t)
        grow(self, t, progress)

    monkeypatch.setattr(state_update.AppUpdate, "_grow_newest", counted)
    if folds == "sliced":  # each batch too large for a pass: built in slices of users
        monkeypatch.setattr(state_partitions, "CHUNK_EVENTS", 1)
        monkeypatch.setattr(state_partitions, "MAX_SLICES", 3)
    monkeypatch.setattr(state_update, "OVERLAY_USERS_MAX", 2 if folds == "by the flush" else 99)
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

    def same_answers(ends: tuple[dt.date, ...]) -> None:
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
    same_answers((day, day + D(1), day - D(1)))
    # The next day folds the overlay into the day's files first.
    nxt = [ev("u1", 10, gender=1), ev("u7", 11, city="深圳")]
    for e in nxt:
        e["ts"] = e["ts"].replace(str(day), str(day + D(1)))
    load(lake, nxt, "next.ndjson")
    load(fresh, nxt, "next.ndjson")
    assert not StateStore(lake).manifest.apps[a].overlay
    same_answers((day, day + D(1), day + D(2)))


def test_ingest_reports_the_state_update_as_progress(lake: Lake, tmp_path: Path) -> None:
    seen: list[tuple[str, float]] = []
    events = [{"appid": "wxprog000000001", "openid": "u", "ts": "2024-06-10T10:00:00+08:00"}]
    path = tmp_path / "p.ndjson"
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n", encoding="utf-8")
    ingest_file(lake, path, lambda desc, frac: seen.append((desc, frac)))
    state = [(d, f) for d, f in seen if d.startswith("portraits: ")]
    assert state and state[-1] == ("portraits: up to date", 1.0)
    assert [f for _, f in state] == sorted(f for _, f in state)


def test_late_events_for_yesterday_recount_only_their_windows(
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
    monkeypatch.setattr(state_update.Head, "from_days", no_full_pass)
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


def test_state_of_another_format_is_rebuilt(lake: Lake) -> None:
    a = "wxformat00000001"
    load(lake, [{"appid": a, "openid": "u1", "ts": "2024-06-10T10:00:00+08:00", "gender": 2}])
    manifest = lake.state_dir / "manifest.json"
    raw = json.loads(manifest.read_text())
    manifest.write_text(json.dumps(raw | {"format": state_mod.FORMAT - 1}))
    q = PortraitQuery(a, dt.date(2024, 6, 10), dt.date(2024, 6, 10))
    assert portrait(q, get_engine("duckdb", lake)) == portrait(q, get_engine("reference", lake))
    assert json.loads(manifest.read_text())["format"] == state_mod.FORMAT


def test_any_window_is_the_reference_answer_after_late_events(
    generated: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    """Random spans of 1-366 days (the lookup) and beyond (the day partitions), ending
    inside, before and after the data, after late events: the answer of the sql engine
    (itself checked against the reference), and of the reference for a few."""
    src, _ = generated
    lake = Lake(Settings(data_dir=tmp_path / "any", duckdb_memory_limit_mb=256))
    ingest_file(lake, src)
    load(lake, _late_events(), "late.ndjson")
    rng = random.Random(11)
    spans = [1, 2, 7, 13, 30, 31, 90, 366, 367, 400]
    windows = [(END - D(rng.randint(-3, 45)), rng.choice(spans)) for _ in range(8)]
    queries = [PortraitQuery(a, end - D(n - 1), end) for a in CONFIG.appids for end, n in windows]
    store, sql, ref = (get_engine(e, lake) for e in ("incremental", "sql", "reference"))
    for i, q in enumerate(queries):
        assert portrait(q, store) == portrait(q, sql if i % 8 else ref), q


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


def test_an_app_with_many_days_does_not_hold_back_another_apps_answer(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One batch: one app adds events on 40 days (a long update), another a few events on
    one day: the latter is updated first and published before the long update starts, so
    a reader answers it from the new state meanwhile (issue 24, hole 7)."""
    slow, quick = "wxa000000000000001", "wxa000000000000002"  # (the slow one sorts first)
    day = dt.date(2026, 3, 31)
    load(lake, [{"appid": a, "openid": "o", "ts": f"{day}T08:00:00+08:00", "gender": 1}
                for a in (slow, quick)], "first.ndjson")  # fmt: skip
    seen: dict[str, Any] = {}
    apply = state_update.AppUpdate.apply

    def watched(self: Any, days: set[str], *args: Any) -> Any:
        if self.appid == slow:  # what a reader answers for the quick app meanwhile
            q = PortraitQuery(quick, day, day)
            seen["manifest"] = state_mod.Manifest.read(lake.state_dir).version
            seen["answer"] = portrait(q, get_engine("incremental", lake))
        return apply(self, days, *args)

    monkeypatch.setattr(state_update.AppUpdate, "apply", watched)
    batch = [{"appid": slow, "openid": f"s{k}", "ts": f"{day - D(k)}T09:00:00+08:00"}
             for k in range(1, 41)]  # fmt: skip
    batch += [{"appid": quick, "openid": f"q{k}", "ts": f"{day}T09:00:00+08:00", "gender": 2}
              for k in range(3)]  # fmt: skip
    version = lake.catalog.version()
    load(lake, batch, "batch.ndjson")
    monkeypatch.undo()
    assert seen["manifest"] == version  # (the catalog's version is published at the end)
    q = PortraitQuery(quick, day, day)
    assert seen["answer"] == portrait(q, get_engine("reference", lake))
    assert StateStore(lake).manifest.version == lake.catalog.version()
