"""The window algorithms (all windows by difference arrays; a few windows by overwriting
days oldest first) agree on random day partitions, gaps and first days included."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from userportrait.portrait.dims import DIMS, Dim
from userportrait.store.windows import DayPart, compute_windows, few_windows, one_window

_DTYPE: dict[Dim, type[np.integer[Any]]] = {
    "province": np.int16,
    "city": np.int16,
    "genders": np.int8,
    "platforms": np.int8,
    "ages": np.int8,
    "devices": np.int32,
}
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
def test_head_built_at_once_equals_head_moved_day_by_day(seed: int) -> None:
    from userportrait.store.state import _Head  # the two ways the store builds its head

    rng = np.random.default_rng(seed)
    n_users = 200
    parts = []
    t = 1000
    for _ in range(25):
        t += int(rng.choice([1, 1, 2, 6, 30, 300]))
        uid = np.sort(rng.choice(n_users, size=int(rng.integers(1, 80)), replace=False))
        values = {d: rng.integers(0, SIZES[d], len(uid)).astype(_DTYPE[d]) for d in DIMS}
        parts.append(DayPart(t, uid.astype(np.uint32), values))
    moved = _Head(n_users)
    for part in parts:
        moved.apply(part)
    built = _Head.from_days(parts, n_users)
    for name, array in moved.arrays().items():
        assert array.tolist() == built.arrays()[name].tolist(), name
