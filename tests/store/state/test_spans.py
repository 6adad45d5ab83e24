"""Span histograms (store/state/spans.py): any span of 1..366 days ending on any day is
the answer of counting the window from its day partitions (windows.one_window)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from tests.store.state.support import SIZES, random_days
from userportrait.portrait.dims import DIMS
from userportrait.store.state import VALUE_DTYPES, Head
from userportrait.store.state.spans import SpanCounter, SpanTable, end_day_for
from userportrait.store.windows import NO_DAY, DayPart, one_window


def _first_days(days: dict[int, DayPart], n_users: int) -> np.ndarray:
    first = np.full(n_users, NO_DAY, np.int32)
    for t in sorted(days, reverse=True):
        first[days[t].uid] = t
    return first


def _replay(days: dict[int, DayPart], first: np.ndarray, out: Path) -> dict[int, SpanTable]:
    """Span histograms of every day, as the store builds them from nothing."""
    sizes = dict(SIZES)
    head = Head.from_days([], len(first))
    head.advance(min(days) - 1)
    counter = SpanCounter.from_head(head, first, sizes)
    tables = {}
    for t in sorted(days):
        counter.fold(head, days[t], first)
        counter.save(out / f"{t}.npz")
        tables[t] = SpanTable(out / f"{t}.npz")
    return tables


def _check(days: dict[int, DayPart], first: np.ndarray, tables: dict[int, SpanTable],
           windows: list[tuple[int, int]]) -> None:  # fmt: skip
    ends = sorted(tables)
    for n, end in windows:
        e = end_day_for(ends, end)
        want = one_window(days, first, SIZES, n, end)
        if e is None or n - (end - e) <= 0:
            assert all(want.active[d].sum() == 0 for d in DIMS), (n, end)
            continue
        got = tables[e].counts(n - (end - e), dict(SIZES))
        for d in DIMS:
            assert got.active[d].tolist() == want.active[d].tolist(), (n, end, d)
            assert got.new[d].tolist() == want.new[d].tolist(), (n, end, d)


@pytest.mark.parametrize("seed", range(5))
def test_span_histograms_equal_one_window(seed: int, tmp_path: Path) -> None:
    """Any span of 1..366 days ending on any day (with data or not): the lookup equals
    counting the window from its day partitions."""
    rng = np.random.default_rng(seed)
    n_users = 300
    days: dict[int, DayPart] = {}
    for t in sorted(rng.choice(np.arange(100, 560), size=45, replace=False).tolist()):
        uid = np.sort(rng.choice(n_users, size=int(rng.integers(1, 120)), replace=False))
        values = {d: rng.integers(0, SIZES[d], len(uid)).astype(VALUE_DTYPES[d]) for d in DIMS}
        days[t] = DayPart(t, uid.astype(np.uint32), values)
    first = _first_days(days, n_users)
    tables = _replay(days, first, tmp_path)
    spans = [1, 2, 7, 30, 31, 90, 365, 366, *rng.integers(1, 367, 6).tolist()]
    ends = [*rng.choice(sorted(days), 6).tolist(), 95, 99, 100, 330, 600, 900, 1000]
    _check(days, first, tables, [(n, e) for n in spans for e in ends])


@pytest.mark.parametrize("seed", range(3))
def test_replay_from_a_saved_day_equals_the_whole_replay(seed: int, tmp_path: Path) -> None:
    """Late events: the store reloads the histograms and head kept for an earlier day and
    replays from there (cells no query reads are not saved, nor needed)."""
    rng = np.random.default_rng(seed)
    n_users = 200
    parts = random_days(rng, n_users, 20)
    days = {p.day: p for p in parts}
    first = _first_days(days, n_users)
    whole = _replay(days, first, tmp_path)
    middle = sorted(days)[9]
    head = Head.from_days([p for p in parts if p.day <= middle], n_users)
    counter = SpanCounter.load(tmp_path / f"{middle}.npz", dict(SIZES), middle)
    (tmp_path / "again").mkdir()
    for t in sorted(days)[10:]:
        counter.fold(head, days[t], first)
        counter.save(tmp_path / "again" / f"{t}.npz")
        for n in (1, 7, 30, 100, 366):
            assert_same(SpanTable(tmp_path / "again" / f"{t}.npz"), whole[t], n)


def assert_same(a: SpanTable, b: SpanTable, n: int) -> None:
    ca, cb = a.counts(n, dict(SIZES)), b.counts(n, dict(SIZES))
    for d in DIMS:
        assert ca.active[d].tolist() == cb.active[d].tolist(), (n, d)
        assert ca.new[d].tolist() == cb.new[d].tolist(), (n, d)


@pytest.mark.parametrize("seed", range(2))
def test_spans_over_decades_are_exact_and_small(seed: int, tmp_path: Path) -> None:
    """Days far apart (1970, 2026, 9999): memory follows the days with data, never the
    calendar between them, and the answers equal the day partitions'."""
    rng = np.random.default_rng(seed)
    n_users = 200
    days: dict[int, DayPart] = {}
    for t in [0, 3, 20_000, 20_001, 20_150, 20_340, 2_932_000]:
        uid = np.sort(rng.choice(n_users, size=int(rng.integers(1, 60)), replace=False))
        values = {d: rng.integers(0, SIZES[d], len(uid)).astype(VALUE_DTYPES[d]) for d in DIMS}
        days[t] = DayPart(t, uid.astype(np.uint32), values)
    first = _first_days(days, n_users)
    tracemalloc.start()
    try:
        tables = _replay(days, first, tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"peak {peak >> 20} MiB"
    windows = [(n, e) for e in [0, 29, 20_001, 20_365, 2_932_000, 2_932_300] for n in (1, 30, 366)]
    _check(days, first, tables, windows)


@pytest.mark.parametrize("seed", range(4))
def test_removing_users_from_saved_histograms_equals_never_counting_them(
    seed: int, tmp_path: Path
) -> None:
    """A forget's patch (``remove_users``, from the users' own latest days and values as
    of each end day) leaves every end day's file equal, array for array, to histograms
    built without them; a user whose cells are not there fails it."""
    from userportrait.store.state.forgetting import Latest
    from userportrait.store.state.spans import remove_users

    rng = np.random.default_rng(seed)
    n_users = 250
    days: dict[int, DayPart] = {}
    for t in sorted(rng.choice(np.arange(100, 700), size=40, replace=False).tolist()):
        uid = np.sort(rng.choice(n_users, size=int(rng.integers(1, 120)), replace=False))
        values = {d: rng.integers(0, SIZES[d], len(uid)).astype(VALUE_DTYPES[d]) for d in DIMS}
        days[t] = DayPart(t, uid.astype(np.uint32), values)
    first = _first_days(days, n_users)
    gone = np.sort(rng.choice(n_users, size=40, replace=False))
    without = {}
    for t, p in days.items():
        keep = ~np.isin(p.uid, gone)
        without[t] = DayPart(t, p.uid[keep], {d: p.values[d][keep] for d in DIMS})
    first_without = first.copy()
    first_without[gone] = NO_DAY
    (tmp_path / "all").mkdir()
    (tmp_path / "without").mkdir()
    _replay(days, first, tmp_path / "all")
    _replay(without, first_without, tmp_path / "without")
    latest = Latest(len(gone))
    for t in sorted(days):
        at = np.searchsorted(gone, days[t].uid)
        mine = np.isin(days[t].uid, gone)
        local = DayPart(t, at[mine].astype(np.uint32), {d: days[t].values[d][mine] for d in DIMS})
        latest.apply(local)
        theirs = first[gone]
        remove_users(tmp_path / "all" / f"{t}.npz", tmp_path / f"{t}.npz", latest.head(t),
                     theirs, np.flatnonzero(theirs <= t))  # fmt: skip
        with (
            np.load(tmp_path / f"{t}.npz") as got,
            np.load(tmp_path / "without" / f"{t}.npz") as want,
        ):
            assert sorted(got.files) == sorted(want.files)
            for k in want.files:
                if k.endswith("_ptr") or k in ("last", "first"):
                    assert got[k][:-1].tolist() == want[k][:-1].tolist(), (t, k)  # (366: unread)
                else:  # cells in another order within an age: compare as sets
                    assert len(got[k]) == len(want[k]), (t, k)
        for k in DIMS:
            for kind in ("a", "n"):
                assert _cells(tmp_path / f"{t}.npz", f"{kind}_{k}") == _cells(
                    tmp_path / "without" / f"{t}.npz", f"{kind}_{k}"
                ), (t, kind, k)
    last = max(days)
    with pytest.raises(ValueError, match="not there|more users"):  # taken out twice
        remove_users(tmp_path / f"{last}.npz", tmp_path / "twice.npz", latest.head(last),
                     first[gone], np.flatnonzero(first[gone] <= last))  # fmt: skip


def _cells(path: Path, key: str) -> set[tuple[int, int, int]]:
    with np.load(path) as z:
        ptr, value, n = z[f"{key}_ptr"], z[f"{key}_value"], z[f"{key}_n"]
    age = np.repeat(np.arange(len(ptr) - 1), np.diff(ptr))
    return set(zip(age.tolist(), value.tolist(), n.tolist(), strict=True))
