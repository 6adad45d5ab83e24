"""The per-user head (store/state/head.py): built at once, moved day by day, patched."""

from __future__ import annotations

import numpy as np
import pytest

from tests.store.state.support import SIZES, random_days
from userportrait.portrait.dims import DIMS
from userportrait.store.state import Head
from userportrait.store.state.head import LONG_AGO
from userportrait.store.windows import DayPart


@pytest.mark.parametrize("seed", range(3))
def test_head_built_at_once_equals_head_moved_day_by_day(seed: int) -> None:
    n_users = 200
    parts = random_days(np.random.default_rng(seed), n_users, 25)
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
    parts = random_days(rng, n_users, 20)
    head = Head.from_days(parts, n_users)
    for i in rng.choice(len(parts), size=4, replace=False).tolist():
        parts[i] = _grown(parts[i], rng, n_users)
        head.fold(parts[i])
    want = Head.from_days(parts, n_users)
    newest = int(want.newest[0])
    for d in DIMS:  # values older than any window may differ; what windows read may not
        fresh = want.age[d] < LONG_AGO
        assert head.age[d].tolist() == want.age[d].tolist(), d
        assert head.val[d][fresh].tolist() == want.val[d][fresh].tolist(), d
    assert head.last.tolist() == want.last.tolist() and newest == int(head.newest[0])


def test_grow_adds_users_never_seen() -> None:
    head = Head(2)
    head.last[:] = [0, 3]
    head.grow(5)
    head.grow(4)  # never shrinks
    assert head.last.tolist() == [0, 3, LONG_AGO, LONG_AGO, LONG_AGO]
    for d in DIMS:
        assert head.val[d].tolist() == [0] * 5
        assert head.age[d].tolist() == [LONG_AGO] * 5


@pytest.mark.parametrize("spare", [0, 2, 10])
def test_grow_into_the_room_matches_a_head_that_had_them(spare: int) -> None:
    """Users added within the room (no copy) or beyond it (new arrays) are never seen,
    also after the head moved on (the room's ages do not move)."""
    head = Head(3, spare)
    head.last[:] = [0, 3, 5]
    head.val["genders"][:] = [1, 2, 0]
    head.advance(10)
    head.advance(12)
    head.grow(6)
    head.last[5] = 1
    head.grow(20)
    assert head.last.tolist() == [2, 5, 7, LONG_AGO, LONG_AGO, 1] + [LONG_AGO] * 14
    assert head.val["genders"].tolist() == [1, 2] + [0] * 18
    assert all(len(a) == 20 for a in (*head.val.values(), *head.age.values()))


@pytest.mark.parametrize("seed", range(3))
def test_a_head_of_some_dims_plus_the_rest_equals_the_whole_head(seed: int) -> None:
    """Readers build the columns an ask needs and add others later (``include``)."""
    n_users = 200
    parts = random_days(np.random.default_rng(seed), n_users, 25)
    whole = Head.from_days(parts, n_users)
    some = Head.from_days(parts, n_users, ["city", "ages"])
    assert some.dims == ("city", "ages") and set(some.arrays()) == {
        "newest", "last", "v_city", "a_city", "v_ages", "a_ages"
    }  # fmt: skip
    some.grow(n_users + 7)  # room beyond the views: the added columns follow it
    some.include(Head.from_days(parts, n_users + 7, ["province", "city", "devices"]))
    assert some.dims == ("province", "city", "devices", "ages")
    whole.grow(n_users + 7)
    for name, array in some.arrays().items():
        assert array.tolist() == whole.arrays()[name].tolist(), name
    with pytest.raises(ValueError):
        some.include(Head.from_days(parts[:-1], n_users + 7, ["genders"]))  # another day
