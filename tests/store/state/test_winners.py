"""Per-user maxima of one day's events (``store/state/winners.py``): the dense and the
sorted path agree with a plain Python reduction."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest

from userportrait.portrait.dims import DIMS, Dim
from userportrait.store.state import winners
from userportrait.store.state.winners import DailyMax, packed
from userportrait.store.windows import IntArray


def _expected(uid: IntArray, keys: Mapping[Dim, IntArray]) -> dict[int, dict[Dim, int]]:
    best: dict[int, dict[Dim, int]] = {}
    for i, u in enumerate(uid.tolist()):
        row = best.setdefault(u, dict.fromkeys(DIMS, -1))
        for d in DIMS:
            row[d] = max(row[d], int(keys[d][i]))
    return best


@pytest.mark.parametrize("share", [0.0, 2.0], ids=["dense", "sorted"])
def test_reduce_matches_python(monkeypatch: pytest.MonkeyPatch, share: float) -> None:
    monkeypatch.setattr(winners, "DENSE_SHARE", share)
    rng = np.random.default_rng(7)
    n_users = 50
    reducer = DailyMax(n_users, list(DIMS))
    for _day in range(3):  # the scratch arrays are reused, and reset between days
        uid = rng.integers(0, n_users, 400).astype(np.uint32)
        time = rng.integers(0, 5, 400)  # many ties
        keys = {d: packed(time << 14, rng.integers(-1, 4, 400)) for d in DIMS}
        users, best = reducer.reduce(uid, keys.__getitem__)
        want = _expected(uid, keys)
        assert users.dtype == np.uint32
        assert users.tolist() == sorted(want)
        for d in DIMS:
            assert best[d].tolist() == [want[u][d] for u in sorted(want)]


def test_packed_orders_by_time_then_value_and_drops_missing() -> None:
    time = np.array([5, 5, 6, 7])
    value = np.array([3, 2, 0, -1])
    keys = packed(time << 14, value)
    assert keys.tolist() == [5 * 16384 + 3, 5 * 16384 + 2, 6 * 16384, -1]
    assert (keys >> 14).tolist() == [5, 5, 6, -1]
