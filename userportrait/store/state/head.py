"""The per-user head: each user's latest values as of the newest day, for the windows
ending on it (``head.bV.npys``, docs/storage.md)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from numpy.lib import format as npformat

from userportrait.portrait.dims import DIMS, Dim
from userportrait.store.durable import atomic_write
from userportrait.store.state.days import VALUE_DTYPES
from userportrait.store.windows import NO_DAY, DayPart, IntArray, WindowCounts

_HEAD_ARRAYS = ("newest", "last", *(f"v_{d}" for d in DIMS), *(f"a_{d}" for d in DIMS))
_LONG_AGO = 255  # an age (days before the newest day) of 255 or more, or never


class Head:
    """Per user, as of the newest day: how many days ago the user was last active and,
    per dim, the latest value and how many days ago it was seen. Any window ending on the
    newest day is one vectorised pass over it.

    Ages, not days: a window is at most 30 days long, so one byte per user and dim is
    enough (saturating at 255), and the head that is read and written on every added day
    is 18 bytes per user instead of 39.
    """

    def __init__(self, n_users: int) -> None:
        self.newest = np.full(1, NO_DAY, np.int32)  # the day ages count back from
        self.last = np.full(n_users, _LONG_AGO, np.uint8)
        self.val = {d: np.zeros(n_users, VALUE_DTYPES[d]) for d in DIMS}
        self.age = {d: np.full(n_users, _LONG_AGO, np.uint8) for d in DIMS}

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
            age[days < 0] = _LONG_AGO  # never
            np.minimum(age, _LONG_AGO, out=age)
            ages[:] = age
        return head

    def fold(self, part: DayPart) -> None:
        """Fold in a (rebuilt) day partition: a new newest day, or one at or before it.

        A newer day first moves the head forward (every age grows). Then a user's value
        is replaced where the head's is from that day or older and kept where it is from
        a later day: exact for a day seen before, because a rebuilt day holds, per user
        and dim, the value its previous version held or a later one of that day (lake
        events are only ever added).
        """
        newest = int(self.newest[0])
        if newest == NO_DAY or part.day > newest:
            shift = min(part.day - newest, _LONG_AGO) if newest != NO_DAY else 0
            if shift:
                for ages in (self.last, *self.age.values()):  # everything is older now
                    np.minimum(ages, _LONG_AGO - shift, out=ages)
                    ages += shift
            self.newest[0] = newest = part.day
        age = newest - part.day
        if age >= _LONG_AGO:
            return  # too old to be in any window, now or later (ages only grow)
        uid = part.uid.astype(np.intp)
        self.last[uid] = np.minimum(self.last[uid], age)
        for d in DIMS:
            has = part.values[d] != 0
            u = uid[has]
            take = self.age[d][u] >= age
            self.val[d][u[take]] = part.values[d][has][take]
            self.age[d][u[take]] = age

    def windows(
        self, lengths: tuple[int, ...], first: IntArray, sizes: Mapping[Dim, int]
    ) -> dict[int, WindowCounts]:
        """The windows of ``lengths`` days ending on the newest day, one bincount per dim.

        Every age falls in a bucket j = the shortest window that contains it (len(lengths)
        = none). A value counts in window j when its bucket is <= j, a user is active when
        the bucket of ``last`` is and new when the bucket of the first day's age is; so
        one histogram over (value, value bucket, first bucket, last bucket) gives them all.
        """
        newest = int(self.newest[0])
        m = len(lengths)
        if list(lengths) != sorted(lengths) or not 1 <= lengths[0] <= lengths[-1] < _LONG_AGO:
            raise ValueError(f"window lengths must ascend within 1..{_LONG_AGO - 1}: {lengths}")
        bucket = np.full(_LONG_AGO + 1, m, np.uint8)  # age -> bucket
        for j in reversed(range(m)):
            bucket[: lengths[j]] = j
        b = m + 1
        # Users in no window (bucket m) stay in: cheaper than gathering the others.
        first_age = np.subtract(newest, first[: len(self.last)], dtype=np.int64)
        np.clip(first_age, 0, _LONG_AGO, out=first_age)
        who = bucket[first_age].astype(np.int64)  # (first bucket, last bucket)
        who *= b
        who += bucket[self.last]
        key = np.empty(len(self.last), np.int64)  # one buffer, updated in place per dim
        j_le = np.arange(b)[:, None] <= np.arange(m)[None, :]  # [bucket, window]: inside?
        out = {n: WindowCounts(new={}, active={}) for n in lengths}
        for d in DIMS:
            np.copyto(key, self.val[d], casting="unsafe")
            key *= b
            key += bucket[self.age[d]]
            key *= b * b
            key += who
            hist = np.bincount(key, minlength=sizes[d] * b**3).reshape(sizes[d], b, b, b)
            by_value = hist.sum(axis=2)  # [value, value bucket, last bucket]
            by_value_new = hist.sum(axis=3)  # [value, value bucket, first bucket]
            for j, n in enumerate(lengths):
                inside = j_le[:, j]
                active = by_value[:, inside][:, :, inside].sum(axis=(1, 2))
                new = by_value_new[:, inside][:, :, inside].sum(axis=(1, 2))
                active_users = by_value[:, :, inside].sum()
                new_users = by_value_new[:, :, inside].sum()
                active[0] += active_users - active.sum()  # active, no value inside: 未知
                new[0] += new_users - new.sum()
                out[n].active[d] = active
                out[n].new[d] = new
        return out
