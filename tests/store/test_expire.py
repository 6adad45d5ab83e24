"""Expiry: the days before the cut dropped, every window after it answering as before."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import load
from userportrait.engine import get_engine
from userportrait.errors import InvalidDateRange
from userportrait.ingest.pipeline import ingest_file
from userportrait.ingest.profiles import ingest_profiles_file
from userportrait.portrait.query import TZ, PortraitQuery
from userportrait.portrait.service import portrait
from userportrait.settings import Settings
from userportrait.store.catalog import Catalog
from userportrait.store.expire import expire
from userportrait.store.lake import Lake
from userportrait.store.state import StateStore
from userportrait.store.state.manifest import Manifest
from userportrait.synthetic.generate import GeneratorConfig, write_events, write_profiles

CONFIG = GeneratorConfig(users=800, days=40, end=dt.date(2026, 3, 31), apps=2, seed=5)
CUT = CONFIG.start + dt.timedelta(days=8)
DAY = dt.timedelta(days=1)


def windows_after_cut() -> list[tuple[dt.date, dt.date]]:
    """Every 1-, 7- and 30-day window inside [CUT, end], and a few others."""
    out = []
    end = CUT
    while end <= CONFIG.end:
        out += [
            (end - (span - 1) * DAY, end) for span in (1, 7, 30) if end - (span - 1) * DAY >= CUT
        ]
        end += DAY
    out += [(CUT, CONFIG.end), (CUT + 3 * DAY, CONFIG.end - 2 * DAY), (CUT, CUT + 20 * DAY)]
    return out


WINDOWS = windows_after_cut()
FEW = [(CUT, CUT), (CUT, CUT + 6 * DAY), (CONFIG.end - 29 * DAY, CONFIG.end), (CUT, CONFIG.end)]
assert FEW[2][0] >= CUT


def answers(lake: Lake, engine: str, windows: list[tuple[dt.date, dt.date]]) -> list[str]:
    eng = get_engine(engine, lake)
    try:
        return [
            json.dumps(portrait(PortraitQuery(a, b, e), eng), ensure_ascii=False)
            for a in CONFIG.appids
            for b, e in windows
        ]
    finally:
        eng.close()


@pytest.fixture
def store(tmp_path: Path, lake: Lake) -> Lake:
    src = tmp_path / "events.parquet"
    write_events(src, CONFIG)
    assert ingest_file(lake, src).rejected == 0
    return lake


def test_windows_after_the_cut_answer_exactly_as_before(tmp_path: Path, store: Lake) -> None:
    before = answers(store, "incremental", WINDOWS)
    version = store.catalog.version()
    dropped = [f for f in store.catalog.files() if f.day < CUT.isoformat()]

    report = expire(store, CUT)

    assert report.files == len(dropped) and report.rows == sum(f.rows for f in dropped)
    assert sorted(report.apps) == CONFIG.appids
    assert min(f.day for f in store.catalog.files()) == CUT.isoformat()
    assert not any((store.root / f.path).exists() for f in dropped)
    assert store.catalog.version() == version + len(CONFIG.appids)
    # An expiry touches no day: the state keeps its first days and replays nothing.
    assert store.catalog.touched(version, store.catalog.version()) == []
    assert answers(store, "incremental", WINDOWS) == before
    # The engines that read the lake take the kept first days (first_seen) too.
    few = answers(store, "incremental", FEW)
    assert answers(store, "sql", FEW) == few
    assert answers(store, "reference", FEW) == few
    # A state built anew from what is left seeds the kept first days.
    StateStore(store).rebuild()
    assert answers(store, "incremental", WINDOWS) == before

    # Sensitive: a store holding only the events from the cut on answers otherwise (its
    # returning users look new), so equality above is the kept first days' doing.
    fresh = Lake(Settings(data_dir=tmp_path / "fresh", duckdb_memory_limit_mb=512))
    table = pq.read_table(tmp_path / "events.parquet")
    mask = [ts.astimezone(TZ).date() >= CUT for ts in table["ts"].to_pylist()]
    pq.write_table(table.filter(mask), tmp_path / "kept.parquet")
    assert ingest_file(fresh, tmp_path / "kept.parquet").rejected == 0
    assert answers(fresh, "incremental", FEW) != few


def test_an_expiry_drops_the_state_files_of_the_days_before_the_cut(
    tmp_path: Path, store: Lake
) -> None:
    """Disk follows the events kept: no day partition, span histogram or head of a day
    before the cut stays, and every window after it answers as before (profiles too)."""
    profiles = tmp_path / "profiles.ndjson"
    write_profiles(profiles, CONFIG)
    ingest_profiles_file(store, profiles)
    before = answers(store, "incremental", WINDOWS)
    dated = [p for p in store.state_dir.rglob("*") if p.is_file() and p.name[:4].isdigit()]
    assert any(p.name < CUT.isoformat() for p in dated)

    expire(store, CUT)

    left = [p for p in store.state_dir.rglob("*") if p.is_file() and p.name[:4].isdigit()]
    assert left and not [p for p in left if p.name < CUT.isoformat()]
    manifest = Manifest.read(store.state_dir)
    for app in manifest.apps.values():
        assert min(app.days) == min(app.spans) == CUT.isoformat()
    assert answers(store, "incremental", WINDOWS) == before
    few = answers(store, "reference", FEW)
    assert answers(store, "incremental", FEW) == few
    # The state goes on from there: a day added after the cut.
    day = CONFIG.end + DAY
    load(store, [{"appid": a, "openid": "o000000003", "ts": f"{day}T08:00:00+08:00"}
                 for a in CONFIG.appids], "next.ndjson")  # fmt: skip
    later = [*FEW, (day - 29 * DAY, day), (day, day)]
    assert answers(store, "incremental", later) == answers(store, "reference", later)


def test_the_first_seen_file_keeps_each_earlier_first_day(store: Lake) -> None:
    first: dict[tuple[str, str], str] = {}
    for f in store.catalog.files():
        for openid in pq.read_table(store.root / f.path, columns=["openid"])["openid"].to_pylist():
            key = (f.appid, openid)
            first[key] = min(first.get(key, f.day), f.day)

    expire(store, CUT - 5 * DAY)
    report = expire(store, CUT)

    for appid in CONFIG.appids:
        kept = store.catalog.retention_of(appid)
        assert kept is not None and kept.first_kept == CUT.isoformat()
        assert kept.first_seen is not None
        rows = pq.read_table(store.root / kept.first_seen).to_pylist()
        expected = {o: d for (a, o), d in first.items() if a == appid and d < CUT.isoformat()}
        assert {r["openid"]: r["first_day"].isoformat() for r in rows} == expected
    # The first expiry's files were replaced by the second's and deleted.
    files = sorted(p.relative_to(store.root) for p in (store.root / "first_seen").rglob("*"))
    listed = sorted(Path(r.first_seen or "") for r in store.catalog.retention().values())
    assert [f for f in files if f.suffix == ".parquet"] == listed
    assert report.users_kept == len([1 for (_a, _o), d in first.items() if d < CUT.isoformat()])


def test_a_cut_never_moves_back(store: Lake) -> None:
    expire(store, CUT)
    version = store.catalog.version()
    report = expire(store, CUT - 3 * DAY)
    assert report.batches == [] and store.catalog.version() == version
    assert store.catalog.retention_of(CONFIG.appids[0]).first_kept == CUT.isoformat()  # type: ignore[union-attr]


@pytest.mark.parametrize("engine", ["incremental", "sql", "reference"])
def test_windows_before_the_cut_are_refused(store: Lake, engine: str) -> None:
    expire(store, CUT, appid=CONFIG.appids[0])
    eng = get_engine(engine, store)
    first = CUT.strftime("%Y%m%d")
    with pytest.raises(InvalidDateRange) as err:
        eng.run_portrait(PortraitQuery(CONFIG.appids[0], CUT - DAY, CUT + 5 * DAY))
    assert err.value.errcode == 61501
    begin = (CUT - DAY).strftime("%Y%m%d")
    assert str(err.value) == (
        f"date range error: begin_date {begin} is before the first kept day {first} "
        "(older events were expired)"
    )
    # The other app keeps everything.
    eng.run_portrait(PortraitQuery(CONFIG.appids[1], CONFIG.start, CONFIG.start))
    eng.close()


def test_events_before_the_cut_are_rejected_at_ingest(store: Lake) -> None:
    expire(store, CUT)
    appid = CONFIG.appids[0]
    before = answers(store, "incremental", FEW)
    ts = f"{(CUT - DAY).isoformat()}T23:59:59+08:00"
    report = load(
        store,
        [
            {"appid": appid, "openid": "late", "ts": ts, "province": "广东"},
            {"appid": appid, "openid": "ok", "ts": f"{CUT.isoformat()}T00:00:00+08:00"},
        ],
    )
    assert report.accepted == 1 and report.rejected == 1
    assert [r.reason for r in report.rejects] == [
        f"ts is before the retention cut {CUT.strftime('%Y%m%d')} of its app: {ts}"
    ]
    assert min(f.day for f in store.catalog.files()) == CUT.isoformat()
    assert answers(store, "incremental", FEW[1:2]) != before[1:2]  # "ok" came on the cut day


def test_an_expiry_killed_before_its_commit_changes_nothing(
    store: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = answers(store, "incremental", FEW)
    files = store.catalog.files()

    def killed(*_args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(Catalog, "expire_files", killed)
    with pytest.raises(KeyboardInterrupt):
        expire(store, CUT)
    monkeypatch.undo()
    assert store.catalog.files() == files and store.catalog.retention() == {}
    assert all((store.root / f.path).exists() for f in files)
    assert list((store.root / "first_seen").rglob("*.parquet"))  # the orphan ...
    assert store.collect_garbage() == 1  # ... that the next writer removes
    assert answers(store, "incremental", FEW) == before


@pytest.mark.parametrize("rebuilt", [False, True])
def test_a_user_back_after_the_cut_is_not_new(store: Lake, rebuilt: bool) -> None:
    appid = CONFIG.appids[0]
    gone = {r["openid"] for f in store.catalog.files(appid) if f.day < CUT.isoformat()
            for r in pq.read_table(store.root / f.path, columns=["openid"]).to_pylist()}  # fmt: skip
    later = {r["openid"] for f in store.catalog.files(appid) if f.day >= CUT.isoformat()
             for r in pq.read_table(store.root / f.path, columns=["openid"]).to_pylist()}  # fmt: skip
    back = sorted(gone - later)[0]  # seen only before the cut
    expire(store, CUT)
    if rebuilt:
        StateStore(store).rebuild()
    day = CONFIG.end  # the newest day: a flush-sized batch merges into it
    query = PortraitQuery(appid, day, day)

    def counts(engine: str) -> tuple[int, int]:
        eng = get_engine(engine, store)
        try:
            body = portrait(query, eng)
        finally:
            eng.close()
        return tuple(
            sum(r["value"] for r in body[k]["genders"]) for k in ("visit_uv", "visit_uv_new")
        )  # type: ignore[return-value]

    active, new = counts("reference")
    ts = f"{day.isoformat()}T23:00:00+08:00"
    users = [back, "brand-new"]
    load(store, [{"appid": appid, "openid": o, "ts": ts} for o in users], "back.ndjson")
    for engine in ("incremental", "sql", "reference"):
        assert counts(engine) == (active + 2, new + 1), engine


def test_a_forget_after_an_expiry_leaves_no_kept_first_day(tmp_path: Path, store: Lake) -> None:
    """The first days an expiry keeps hold openids: a deletion request reaches them too."""
    import pyarrow.parquet as pq

    from tests.store.test_forget import assert_no_trace
    from userportrait.store.forget import forget

    expire(store, CUT)
    first_seen = store.catalog.retention_of(CONFIG.appids[0])
    assert first_seen is not None and first_seen.first_seen
    kept = pq.read_table(store.root / first_seen.first_seen).column("openid").to_pylist()
    gone = kept[:5]
    report = forget(store, CONFIG.appids[0], gone)
    assert report.users == 5
    now = store.catalog.retention_of(CONFIG.appids[0])
    assert now is not None and now.first_seen and now.first_seen != first_seen.first_seen
    assert now.first_kept == first_seen.first_kept
    left = pq.read_table(store.root / now.first_seen).column("openid").to_pylist()
    assert left == kept[5:]
    assert_no_trace(store.root, gone)
    assert answers(store, "incremental", FEW) == answers(store, "reference", FEW)
