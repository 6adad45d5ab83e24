"""A forget patches the state: it answers every window as a state built from scratch on
the remaining events (and as the reference engine), and it goes on from there."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.conftest import load
from tests.store.state.support import split_days
from tests.store.test_forget import assert_no_trace
from userportrait.engine import get_engine
from userportrait.ingest.pipeline import ingest_file
from userportrait.portrait.query import PortraitQuery
from userportrait.portrait.service import portrait
from userportrait.settings import Settings
from userportrait.store.expire import expire
from userportrait.store.forget import forget
from userportrait.store.lake import Lake
from userportrait.store.state import StateStore
from userportrait.store.state.manifest import Manifest
from userportrait.store.windows import NO_DAY
from userportrait.synthetic.generate import GeneratorConfig, write_events

CONFIG = GeneratorConfig(users=300, days=20, end=dt.date(2026, 3, 31), apps=1, seed=23)
APP = CONFIG.appids[0]
END, START = CONFIG.end, CONFIG.start
D = dt.timedelta
#: A day only the forgotten "solo" user was active on (the state must drop it), with a
#: province, city and device nobody else has.
SOLO_DAY = START - D(6)


def extra_events() -> list[dict[str, Any]]:
    """Crafted events: "solo", alone on its day; "late-new", first seen on the newest day
    by the flush-sized batch (its uid is beyond the ``first_day`` file: the overlay's);
    "kept-new", the same but kept."""
    return [
        {"appid": APP, "openid": "solo", "ts": f"{SOLO_DAY}T09:00:00+08:00", "province": "西藏",
         "city": "拉萨", "device": "Solo Phone", "age": 77, "gender": "f"},
        {"appid": APP, "openid": "late-new", "ts": f"{END}T22:00:00+08:00", "province": "海南"},
        {"appid": APP, "openid": "kept-new", "ts": f"{END}T22:30:00+08:00", "gender": "m"},
    ]  # fmt: skip


def build(root: Path, days: list[Path], drop: set[str]) -> Lake:
    """Every day but the last in one batch, the crafted "solo" day late, then the last
    day's first half and second half as two batches (the second merges into the newest
    day through its overlay); without the events of ``drop``."""
    lake = Lake(Settings(data_dir=root / "data", duckdb_memory_limit_mb=512))
    root.mkdir(parents=True, exist_ok=True)

    def without(table: pa.Table) -> pa.Table:
        return table.filter(
            pc.invert(pc.is_in(table["openid"], pa.array(sorted(drop), pa.string())))
        )

    body = pa.concat_tables([pq.read_table(p) for p in days[:-1]])
    pq.write_table(without(body), root / "body.parquet")
    ingest_file(lake, root / "body.parquet")
    extra = [e for e in extra_events() if e["openid"] not in drop]
    if extra[:1] and extra[0]["openid"] == "solo":
        load(lake, extra[:1], "solo.ndjson")
    last = without(pq.read_table(days[-1]))
    half = last.num_rows // 2
    pq.write_table(last.slice(0, half), root / "last1.parquet")
    ingest_file(lake, root / "last1.parquet")
    pq.write_table(last.slice(half), root / "last2.parquet")
    tail = [e for e in extra if e["openid"] != "solo"]
    load(lake, tail, "tail.ndjson")
    ingest_file(lake, root / "last2.parquet")
    return lake


def random_windows(seed: int, count: int) -> list[tuple[dt.date, dt.date]]:
    rng = np.random.default_rng(seed)
    lo, hi = SOLO_DAY - D(3), END + D(4)
    out = []
    for _ in range(count):
        end = lo + D(int(rng.integers(0, (hi - lo).days + 1)))
        span = int(rng.choice([1, 2, 3, 7, 14, 30, 400, int(rng.integers(1, 40))]))
        out.append((end - D(span - 1), end))
    out += [(SOLO_DAY, SOLO_DAY), (SOLO_DAY, END), (END, END), (END - D(6), END)]
    return out


def answers(lake: Lake, engine: str, windows: list[tuple[dt.date, dt.date]]) -> list[str]:
    eng = get_engine(engine, lake)
    try:
        return [
            json.dumps(portrait(PortraitQuery(APP, b, e), eng), ensure_ascii=False)
            for b, e in windows
        ]
    finally:
        eng.close()


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("forgetting")
    write_events(root / "all.parquet", CONFIG)
    (root / "days").mkdir()
    return split_days(root / "all.parquet", root / "days")


def forgotten(days: list[Path]) -> list[str]:
    """Every 7th user of the app, "solo" and "late-new"."""
    ids = set()
    for p in days:
        ids |= set(pq.read_table(p, columns=["openid"])["openid"].to_pylist())
    return [*sorted(ids)[::7], "solo", "late-new"]


def test_a_patched_state_answers_as_one_built_without_them(
    tmp_path: Path, days: list[Path]
) -> None:
    gone = forgotten(days)
    s1 = build(tmp_path / "s1", days, set())
    s2 = build(tmp_path / "s2", days, set(gone))
    windows = random_windows(7, 80)
    before = answers(s1, "incremental", windows)
    state = Manifest.read(s1.state_dir)
    app = state.apps[APP]
    assert app.overlay and str(SOLO_DAY) in app.days  # (what the patch must handle)

    report = forget(s1, APP, gone)

    assert report.users == len(gone) and report.batch_id == s1.catalog.version()
    patched = Manifest.read(s1.state_dir)
    assert patched.version == s1.catalog.version()
    # Patched, not rebuilt: the dictionary keeps its length (tombstones) ...
    assert patched.apps[APP].n_users == app.n_users
    first = np.load(s1.state_dir / f"appid={APP}" / str(patched.apps[APP].first_day))
    assert len(first) == app.n_users
    assert (first == NO_DAY).sum() == len(gone)
    # ... and the day only "solo" had went with its files.
    assert str(SOLO_DAY) not in patched.apps[APP].days
    assert str(SOLO_DAY) not in patched.apps[APP].spans
    expected = answers(s2, "reference", windows)
    assert answers(s2, "incremental", windows) == expected
    assert answers(s1, "reference", windows) == expected
    assert answers(s1, "incremental", windows) == expected
    assert before != expected
    assert_no_trace(s1.state_dir, gone)
    assert not [p for p in s1.state_dir.rglob("*") if p.is_file() and str(p).endswith(".tmp")]
    StateStore(s1).rebuild()
    assert answers(s1, "incremental", windows) == expected


def test_a_patched_state_goes_on(tmp_path: Path, days: list[Path]) -> None:
    """After the patch: a new day, a flush into it, late events, a returning forgotten
    user (new again, under a new uid) — as a store that never saw them."""
    gone = forgotten(days)
    s1 = build(tmp_path / "s1", days, set())
    s2 = build(tmp_path / "s2", days, set(gone))
    forget(s1, APP, gone)
    back = gone[0]
    later = [
        [{"appid": APP, "openid": back, "ts": f"{END + D(1)}T10:00:00+08:00", "city": "广州"},
         {"appid": APP, "openid": gone[2], "ts": f"{END + D(1)}T11:00:00+08:00"}],
        [{"appid": APP, "openid": gone[3], "ts": f"{END + D(1)}T12:00:00+08:00", "age": 30}],
        [{"appid": APP, "openid": gone[4], "ts": f"{END - D(3)}T12:00:00+08:00"},
         {"appid": APP, "openid": "solo", "ts": f"{SOLO_DAY}T10:00:00+08:00"}],
    ]  # fmt: skip
    windows = random_windows(11, 60)
    for i, batch in enumerate(later):
        for lake in (s1, s2):
            load(lake, batch, f"later{i}.ndjson")
        expected = answers(s2, "reference", windows)
        assert answers(s1, "incremental", windows) == expected, i
        assert answers(s2, "incremental", windows) == expected, i


def test_a_forget_after_an_expiry_is_exact_after_the_cut(tmp_path: Path, days: list[Path]) -> None:
    """The state keeps no day before the cut, yet the users' share of every end day
    after it goes: windows after the cut answer as the reference on what is left."""
    cut = START + D(5)
    gone = forgotten(days)
    s1 = build(tmp_path / "s1", days, set())
    expire(s1, cut)
    forget(s1, APP, gone)
    windows = [(b, e) for b, e in random_windows(3, 80) if b >= cut]
    assert len(windows) > 20
    assert answers(s1, "incremental", windows) == answers(s1, "reference", windows)
    assert_no_trace(s1.state_dir, gone)
