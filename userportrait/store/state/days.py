"""Day numbers and day partitions: the files the state keeps per (appid, day)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from userportrait.portrait.dims import DIMS, Dim
from userportrait.store.state.npys import load_arrays, save_arrays
from userportrait.store.windows import DayPart, IntArray

EPOCH = dt.date(1970, 1, 1)
#: The dtype a day partition keeps each dimension's value ids in (and its DuckDB type).
VALUE_DTYPES: dict[Dim, Any] = {
    "province": np.int16,
    "city": np.int16,
    "genders": np.int8,
    "platforms": np.int8,
    "ages": np.int8,
    "devices": np.int32,
}
SQL_TYPES: dict[Dim, str] = {
    d: {np.int8: "TINYINT", np.int16: "SMALLINT", np.int32: "INTEGER"}[t]
    for d, t in VALUE_DTYPES.items()
}


def day_number(day: dt.date | str) -> int:
    d = dt.date.fromisoformat(day) if isinstance(day, str) else day
    return (d - EPOCH).days


def day_date(n: int) -> dt.date:
    return EPOCH + dt.timedelta(days=n)


def load_day(path: Path, t: int, keys: Path | None = None, mapped: bool = False) -> DayPart:
    """A day partition; with its winners' times when ``keys`` names their file. ``mapped``
    maps the files instead of reading them (a flush reads only its users' rows)."""
    z = load_arrays(path, mapped)
    part = DayPart(t, z["uid"], {d: z[d] for d in DIMS})
    if keys is None:
        return part
    k = load_arrays(keys, mapped)
    return DayPart(t, part.uid, part.values, {d: k[d] for d in DIMS})


def save_day(path: Path, part: DayPart) -> None:
    save_arrays(path, {"uid": part.uid, **{d: part.values[d] for d in DIMS}})


def save_keys(path: Path, part: DayPart) -> None:
    """The winners' times of the newest day (what merging a flush in needs)."""
    assert part.keys is not None
    save_arrays(path, {d: part.keys[d] for d in DIMS})


def rows_of(part: DayPart, uid: IntArray) -> DayPart:
    """``part``'s values and keys of the users ``uid`` (sorted), 0 and -1 for users not in
    it: a binary search per user, so on mapped files only their pages are read."""
    assert part.keys is not None
    at, present = find(part.uid, uid)
    hit = at[present]
    values: dict[Dim, IntArray] = {}
    keys: dict[Dim, IntArray] = {}
    for d in DIMS:
        values[d] = np.zeros(len(uid), VALUE_DTYPES[d])
        values[d][present] = part.values[d][hit]
        keys[d] = np.full(len(uid), -1, np.int64)
        keys[d][present] = part.keys[d][hit]
    return DayPart(part.day, uid, values, keys)


def merge_winners(
    before: DayPart, new: DayPart, names: Callable[[list[int]], dict[int, str]]
) -> DayPart:
    """The users of ``new`` (a flush's winners of one day) with their values of the day once
    ``new`` is merged into what they had (``before``, aligned with ``new.uid``): the later
    event wins, at equal times the larger id or device name, as when the day is built at
    once."""
    assert before.keys is not None and new.keys is not None and before.day == new.day
    values: dict[Dim, IntArray] = {}
    keys: dict[Dim, IntArray] = {}
    for d in DIMS:
        ov, ok = before.values[d], before.keys[d]
        nv, nk = new.values[d], new.keys[d]
        take = nk > ok
        tie = np.flatnonzero((nk == ok) & (nk >= 0) & (nv != ov))
        if len(tie) and d == "devices":
            known = names(sorted({int(i) for i in (*nv[tie].tolist(), *ov[tie].tolist())}))
            take[tie] = [
                known[int(a)] > known[int(b)] for a, b in zip(nv[tie], ov[tie], strict=True)
            ]
        elif len(tie):
            take[tie] = nv[tie] > ov[tie]
        values[d] = np.where(take, nv, ov).astype(VALUE_DTYPES[d])
        keys[d] = np.where(take, nk, ok)
    return DayPart(new.day, new.uid, values, keys)


def overlaid(base: DayPart, top: DayPart) -> DayPart:
    """``base`` with the users of ``top`` replaced or added (keys too when both have them)."""
    at, present = find(base.uid, top.uid)
    fresh = ~present
    pos = at[fresh]

    def merged(mine: IntArray, theirs: IntArray) -> IntArray:
        column = np.array(mine, copy=True)
        column[at[present]] = theirs[present]
        return np.insert(column, pos, theirs[fresh])

    values = {d: merged(base.values[d], top.values[d]) for d in DIMS}
    keys = None
    if base.keys is not None and top.keys is not None:
        keys = {d: merged(base.keys[d], top.keys[d]) for d in DIMS}
    uid = np.insert(np.asarray(base.uid), pos, top.uid[fresh])
    return DayPart(base.day, uid, values, keys)


def find(sorted_uid: IntArray, uid: IntArray) -> tuple[IntArray, IntArray]:
    """Where each of ``uid`` is or would go in ``sorted_uid``, and whether it is there."""
    pos = np.searchsorted(sorted_uid, uid)
    if not len(sorted_uid):
        return pos, np.zeros(len(uid), bool)
    at = np.minimum(pos, len(sorted_uid) - 1)
    present = np.asarray(sorted_uid[at] == uid)
    return np.where(present, at, pos), present


class LazyDays(Mapping[int, DayPart]):
    """Day partitions loaded on access, so a pass over 40 days holds one at a time."""

    def __init__(self, load: Callable[[int], DayPart], present: set[int]) -> None:
        self._load = load
        self._present = present

    def __getitem__(self, t: int) -> DayPart:
        if t not in self._present:
            raise KeyError(t)
        return self._load(t)

    def __iter__(self) -> Iterator[int]:
        return iter(sorted(self._present))

    def __len__(self) -> int:
        return len(self._present)
