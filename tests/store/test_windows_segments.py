"""``store/windows.py``'s per-user counting (issue 27): segments and cross-tabs."""

from __future__ import annotations

import numpy as np
import pytest

from tests.store.state.support import random_days
from userportrait.portrait.dims import DIMS
from userportrait.store.windows import (
    WindowUsers,
    cross_counts,
    segment,
    segment_counts,
    window_users,
    window_values,
)


def users() -> WindowUsers:
    values = {d: np.array([1, 2, 2, 0], np.int16) for d in DIMS}
    values["province"] = np.array([44, 44, 11, 0], np.int16)
    # The largest value (44) has no new user: the odd length a bincount of 2v+new gets.
    return WindowUsers(np.arange(4), np.array([False, False, True, True]), values)


def test_counts_take_values_beyond_the_sizes() -> None:
    """A profile can fill a value no event of the app had, beyond ``value_sizes``."""
    sizes = dict.fromkeys(DIMS, 2)
    counts = segment_counts(users(), sizes)
    assert counts.active["province"].tolist()[:1] == [1] and counts.active["province"][44] == 2
    assert counts.new["province"][44] == 0 and counts.new["province"][11] == 1
    assert counts.new["province"][0] == 1
    assert counts.active["genders"].tolist() == [1, 1, 2]
    assert counts.new["genders"].tolist() == [1, 0, 1]


def test_segment_and_cross_counts() -> None:
    guangdong = segment(users(), [("province", 44)])
    assert guangdong.uid.tolist() == [0, 1] and guangdong.new.tolist() == [False, False]
    new, active = cross_counts(users(), ("province", "genders"))
    assert active == {(0, 0): 1, (11, 2): 1, (44, 1): 1, (44, 2): 1}
    assert new == {(0, 0): 1, (11, 2): 1}
    empty = segment(users(), [("province", 99)])
    assert cross_counts(empty, ("province", "genders")) == ({}, {})


@pytest.mark.parametrize("seed", range(3))
def test_window_values_of_some_users_equal_window_users(seed: int) -> None:
    """A segment's values taken from the days equal the walk of every user's."""
    rng = np.random.default_rng(seed)
    n_users = 300
    parts = random_days(rng, n_users, 12)
    days = {p.day: p for p in parts}
    first = np.zeros(n_users, np.int32)
    n, end = 60, parts[-2].day
    walked = window_users(days, first, n, end)
    some = np.sort(rng.choice(walked.uid, size=len(walked.uid) // 2, replace=False))
    at = np.searchsorted(walked.uid, some)
    inside = [p for p in parts if end - n < p.day <= end]
    got = window_values(inside, some, n_users, ["city", "devices"])
    assert set(got) == {"city", "devices"}
    for d in ("city", "devices"):
        assert got[d].tolist() == walked.values[d][at].tolist(), d
    assert window_values([], some, n_users, ["ages"])["ages"].tolist() == [0] * len(some)
