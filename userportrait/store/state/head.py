"""The per-user head: each user's latest values and their ages as of one day (the newest,
``head.bV.npys``; the last few days' heads are kept for late events, docs/storage.md)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from numpy.lib import format as npformat

from userportrait.portrait.dims import DIMS
from userportrait.store.durable import atomic_write
from userportrait.store.state.days import VALUE_DTYPES
from userportrait.store.windows import NO_DAY, DayPart

_HEAD_ARRAYS = ("newest", "last", *(f"v_{d}" for d in DIMS), *(f"a_{d}" for d in DIMS))
#: An age (days before the head's day) of this or more, or never: one more than the
#: longest window answered by lookup (``spans.HORIZON``).
LONG_AGO = 366


class Head:
    """Per user, as of the head's day: how many days ago the user was last active and,
    per dim, the latest value and how many days ago it was seen.

    Ages, not days: two bytes per user and dim (saturating at ``LONG_AGO``), and moving
    the head a day on is one addition; 25 bytes per user.
    """

    def __init__(self, n_users: int) -> None:
        self.newest = np.full(1, NO_DAY, np.int32)  # the day ages count back from
        self.last = np.full(n_users, LONG_AGO, np.uint16)
        self.val = {d: np.zeros(n_users, VALUE_DTYPES[d]) for d in DIMS}
        self.age = {d: np.full(n_users, LONG_AGO, np.uint16) for d in DIMS}

    @classmethod
    def load(cls, path: Path, n_users: int) -> Head:
        # The arrays one after the other, each with its .npy header: no zip, no CRC pass
        # as np.savez/np.load would do on every added day. Each is read straight into its
        # slot of the (possibly longer, new users) target array.
        head = cls(n_users)
        targets = head.arrays()
        with path.open("rb") as fh:
            for k in _HEAD_ARRAYS:
                version = npformat.read_magic(fh)
                read = npformat.read_array_header_1_0
                if version != (1, 0):
                    read = npformat.read_array_header_2_0
                shape, _, dtype = read(fh)
                target = targets[k]
                if dtype != target.dtype or len(shape) != 1 or shape[0] > len(target):
                    raise ValueError(f"{path}: unexpected array {k} {dtype}{shape}")
                view = memoryview(target[: shape[0]]).cast("B")
                if fh.readinto(view) != view.nbytes:
                    raise ValueError(f"{path}: truncated at {k}")
        return head

    def save(self, path: Path) -> None:
        arrays = self.arrays()

        def write(fh: BinaryIO) -> None:
            for k in _HEAD_ARRAYS:
                np.save(fh, arrays[k])

        atomic_write(path, write)

    def arrays(self) -> dict[str, Any]:
        out: dict[str, Any] = {"newest": self.newest, "last": self.last}
        for d in DIMS:
            out[f"v_{d}"] = self.val[d]
            out[f"a_{d}"] = self.age[d]
        return out

    @classmethod
    def from_days(cls, parts: Iterable[DayPart], n_users: int) -> Head:
        """The head after ``parts`` (ascending days), with absolute days while building
        and ages once at the end: no per-day shift of every user's ages."""
        head = cls(n_users)
        last = np.full(n_users, -1, np.int32)
        day = {d: np.full(n_users, -1, np.int32) for d in DIMS}
        newest = None
        for part in parts:
            if newest is not None and part.day <= newest:
                raise ValueError(f"days must ascend: {part.day} after {newest}")
            newest = part.day
            uid = part.uid.astype(np.intp)
            last[uid] = part.day
            for d in DIMS:
                has = part.values[d] != 0
                u = uid[has]
                head.val[d][u] = part.values[d][has]
                day[d][u] = part.day
        if newest is None:
            return head
        head.newest[0] = newest
        for days, ages in ((last, head.last), *((day[d], head.age[d]) for d in DIMS)):
            age = np.subtract(newest, days, dtype=np.int64)
            age[days < 0] = LONG_AGO  # never
            np.minimum(age, LONG_AGO, out=age)
            ages[:] = age
        return head

    def fold(self, part: DayPart) -> None:
        """Fold in a (rebuilt) day partition: a new newest day, or one at or before it."""
        self.advance(part.day)
        self.apply(part)

    def advance(self, day: int) -> None:
        """Move the head to ``day`` if that is later: every age grows."""
        newest = int(self.newest[0])
        if newest == NO_DAY or day > newest:
            shift = min(day - newest, LONG_AGO) if newest != NO_DAY else 0
            if shift:
                for ages in (self.last, *self.age.values()):  # everything is older now
                    np.minimum(ages, LONG_AGO - shift, out=ages)
                    ages += shift
            self.newest[0] = day

    def apply(self, part: DayPart) -> None:
        """Apply a day at or before the head's day. A user's value is replaced where the
        head's is from that day or older and kept where it is from a later day: exact
        for a day seen before too, because a rebuilt day holds, per user and dim, the
        value its previous version held or a later one of that day (lake events are only
        ever added)."""
        age = int(self.newest[0]) - part.day
        if age < 0:
            raise ValueError(f"day {part.day} is after the head's day {int(self.newest[0])}")
        if age >= LONG_AGO:
            return  # too old to be in any window, now or later (ages only grow)
        uid = part.uid.astype(np.intp)
        self.last[uid] = np.minimum(self.last[uid], age)
        for d in DIMS:
            has = part.values[d] != 0
            u = uid[has]
            take = self.age[d][u] >= age
            self.val[d][u[take]] = part.values[d][has][take]
            self.age[d][u[take]] = age
