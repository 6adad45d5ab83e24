"""Day numbers and day partitions: the files the state keeps per (appid, day)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from userportrait.portrait.dims import DIMS, Dim
from userportrait.store.durable import atomic_write
from userportrait.store.windows import DayPart

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


def load_day(path: Path, t: int) -> DayPart:
    with np.load(path) as z:
        return DayPart(t, z["uid"], {d: z[d] for d in DIMS})


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
