"""Day numbers and day partitions: the files the state keeps per (appid, day)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from userportrait.portrait.dims import DIMS, Dim
from userportrait.store.durable import atomic_write
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


def load_day(path: Path, t: int, keys: Path | None = None) -> DayPart:
    """A day partition; with its winners' times when ``keys`` names their file."""
    with np.load(path) as z:
        part = DayPart(t, z["uid"], {d: z[d] for d in DIMS})
    if keys is None:
        return part
    with np.load(keys) as z:
        return DayPart(t, part.uid, part.values, {d: z[d] for d in DIMS})


def save_keys(path: Path, part: DayPart) -> None:
    """The winners' times of the newest day (what merging a flush in needs)."""
    assert part.keys is not None
    arrays: dict[str, Any] = {d: part.keys[d] for d in DIMS}
    atomic_write(path, lambda fh: np.savez(fh, **arrays))


def merge_day(
    old: DayPart, new: DayPart, names: Callable[[list[int]], dict[int, str]]
) -> tuple[DayPart, DayPart]:
    """``old`` (a day with its keys) with the winners of more events of that day merged
    in: the later event wins, at equal times the larger id or device name, as when the
    day is built at once. Returns (the merged day, the users of ``new`` with their merged
    values): the cost is the batch's plus one pass over the day's arrays, never its events.
    """
    assert old.keys is not None and new.keys is not None and old.day == new.day
    pos = np.searchsorted(old.uid, new.uid)
    at = np.minimum(pos, max(len(old.uid) - 1, 0))
    present = (old.uid[at] == new.uid) if len(old.uid) else np.zeros(len(new.uid), bool)
    values: dict[Dim, IntArray] = {}
    keys: dict[Dim, IntArray] = {}
    for d in DIMS:
        ov = np.zeros(len(new.uid), VALUE_DTYPES[d])
        ok = np.full(len(new.uid), -1, np.int64)
        ov[present] = old.values[d][at[present]]
        ok[present] = old.keys[d][at[present]]
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
    delta = DayPart(new.day, new.uid, values, keys)
    fresh = ~present
    merged_values: dict[Dim, IntArray] = {}
    merged_keys: dict[Dim, IntArray] = {}
    for d in DIMS:
        for target, source, mine in (
            (merged_values, values, old.values),
            (merged_keys, keys, old.keys),
        ):
            column = mine[d].copy()
            column[at[present]] = source[d][present]
            target[d] = np.insert(column, pos[fresh], source[d][fresh])
    uid = np.insert(old.uid, pos[fresh], new.uid[fresh])
    return DayPart(old.day, uid, merged_values, merged_keys), delta


def save_day(path: Path, part: DayPart) -> None:
    arrays: dict[str, Any] = {"uid": part.uid}
    arrays.update({d: part.values[d] for d in DIMS})
    atomic_write(path, lambda fh: np.savez(fh, **arrays))


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
