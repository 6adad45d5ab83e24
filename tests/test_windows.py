"""The window algorithms (all windows by difference arrays; a few windows by overwriting
days oldest first) agree on random day partitions, gaps and first days included."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from userportrait.portrait.dims import DIMS, Dim
from userportrait.store.state import VALUE_DTYPES, Head  # the head's two ways of being built
from userportrait.store.windows import DayPart, compute_windows, few_windows, one_window

SIZES: dict[Dim, int] = {
    "province": 5,
    "city": 9,
    "genders": 3,
    "platforms": 4,
    "ages": 7,
    "devices": 6,
}


@pytest.mark.parametrize("seed", range(5))
def test_one_window_equals_compute_windows(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_users = 300
    days: dict[int, DayPart] = {}
    for t in sorted(rng.choice(np.arange(100, 160), size=35, replace=False).tolist()):
        uid = np.sort(rng.choice(n_users, size=int(rng.integers(1, 120)), replace=False))
        values = {d: rng.integers(0, SIZES[d], len(uid)).astype(np.int16) for d in DIMS}
        days[t] = DayPart(t, uid.astype(np.uint32), values)
    first = np.full(n_users, 10**6, np.int32)
    for t in sorted(days, reverse=True):
        first[days[t].uid] = t
    first[::7] -= 40  # users seen before any partition here
    wanted = [(n, list(range(95, 165, 3))) for n in (1, 7, 30, 11)]
    every = compute_windows(days, first, SIZES, wanted)
    few = few_windows(days, first, SIZES, list(every)[::7])
    for (n, end), counts in every.items():
        one = one_window(days, first, SIZES, n, end)
        if (n, end) in few:
            for d in DIMS:
                assert few[(n, end)].active[d].tolist() == counts.active[d].tolist()
                assert few[(n, end)].new[d].tolist() == counts.new[d].tolist()
        for d in DIMS:
            assert one.active[d].tolist() == counts.active[d].tolist(), (n, end, d)
            assert one.new[d].tolist() == counts.new[d].tolist(), (n, end, d)


@pytest.mark.parametrize("seed", range(3))
def test_compute_windows_over_decades_is_exact_and_small(seed: int) -> None:
    """Days far apart (1970, 2026, 9999) and ends spread over more than ``MAX_SPAN`` days:
    the groups of ends give the answers of one window at a time, and the memory of a few
    groups, not of the calendar between them."""
    rng = np.random.default_rng(seed)
    n_users = 200
    spots = [0, 3, 20_000, 20_001, 20_150, 20_340, 2_932_000]
    days: dict[int, DayPart] = {}
    for t in spots:
        uid = np.sort(rng.choice(n_users, size=int(rng.integers(1, 60)), replace=False))
        values = {d: rng.integers(0, SIZES[d], len(uid)).astype(np.int16) for d in DIMS}
        days[t] = DayPart(t, uid.astype(np.uint32), values)
    first = np.full(n_users, 10**7, np.int32)
    for t in sorted(days, reverse=True):
        first[days[t].uid] = t
    ends = sorted({e for t in spots for e in range(t, t + 30)})
    wanted = [(n, ends) for n in (1, 7, 30)]
    tracemalloc.start()
    try:
        every = compute_windows(days, first, SIZES, wanted)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"peak {peak >> 20} MiB"
    assert len(every) == 3 * len(ends)
    for (n, end), counts in list(every.items())[:: 5 + seed]:
        one = one_window(days, first, SIZES, n, end)
        for d in DIMS:
            assert one.active[d].tolist() == counts.active[d].tolist(), (n, end, d)
            assert one.new[d].tolist() == counts.new[d].tolist(), (n, end, d)


def _random_days(rng: np.random.Generator, n_users: int, count: int) -> list[DayPart]:
    """``count`` ascending day partitions with gaps from 1 to 300 days."""
    parts = []
    t = 1000
    for _ in range(count):
        t += int(rng.choice([1, 1, 2, 6, 30, 40, 300]))
        uid = np.sort(rng.choice(n_users, size=int(rng.integers(5, 80)), replace=False))
        values = {d: rng.integers(0, SIZES[d], len(uid)).astype(VALUE_DTYPES[d]) for d in DIMS}
        parts.append(DayPart(t, uid.astype(np.uint32), values))
    return parts


@pytest.mark.parametrize("seed", range(3))
def test_head_built_at_once_equals_head_moved_day_by_day(seed: int) -> None:
    n_users = 200
    parts = _random_days(np.random.default_rng(seed), n_users, 25)
    moved = Head(n_users)
    for part in parts:
        moved.fold(part)
    built = Head.from_days(parts, n_users)
    for name, array in moved.arrays().items():
        assert array.tolist() == built.arrays()[name].tolist(), name


def _grown(part: DayPart, rng: np.random.Generator, n_users: int) -> DayPart:
    """``part`` rebuilt after more events of its day: more users, values gained or
    replaced by later ones, none lost (what the lake guarantees)."""
    extra = rng.choice(np.setdiff1d(np.arange(n_users), part.uid), size=5, replace=False)
    uid = np.concatenate([part.uid.astype(np.int64), extra])
    order = np.argsort(uid)
    values = {}
    for d in DIMS:
        old = np.concatenate([part.values[d], np.zeros(len(extra), part.values[d].dtype)])
        later = rng.integers(1, SIZES[d], len(uid)).astype(old.dtype)
        change = rng.random(len(uid)) < 0.3
        values[d] = np.where(change, later, old)[order]
    return DayPart(part.day, uid[order].astype(np.uint32), values)


@pytest.mark.parametrize("seed", range(4))
def test_patching_a_grown_day_equals_building_the_head_again(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_users = 200
    parts = _random_days(rng, n_users, 20)
    head = Head.from_days(parts, n_users)
    for i in rng.choice(len(parts), size=4, replace=False).tolist():
        parts[i] = _grown(parts[i], rng, n_users)
        head.fold(parts[i])
    want = Head.from_days(parts, n_users)
    newest = int(want.newest[0])
    for d in DIMS:  # values older than any window may differ; what windows read may not
        fresh = want.age[d] < 255
        assert head.age[d].tolist() == want.age[d].tolist(), d
        assert head.val[d][fresh].tolist() == want.val[d][fresh].tolist(), d
    assert head.last.tolist() == want.last.tolist() and newest == int(head.newest[0])
