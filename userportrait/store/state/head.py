"""The per-user head: each user's latest values and their ages as of one day (the newest,
``head.bV.npys``; the last few days' heads are kept for late events, docs/storage.md)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from userportrait.portrait.dims import DIMS, Dim
from userportrait.store.state.cores import on_two_cores
from userportrait.store.state.days import VALUE_DTYPES
from userportrait.store.state.npys import load_arrays, save_arrays
from userportrait.store.windows import NO_DAY, DayPart, IntArray

#: An age (days before the head's day) of this or more, or never: one more than the
#: longest window answered by lookup (``spans.HORIZON``).
LONG_AGO = 366
#: A head is allocated with room for ``1/ROOM`` more users than it has, so the users an
#: update adds grow it without copying every user's row (``grow``).
ROOM = 16


class Head:
    """Per user, as of the head's day: how many days ago the user was last active and,
    per dim, the latest value and how many days ago it was seen.

    Ages, not days: two bytes per user and dim (saturating at ``LONG_AGO``), and moving
    the head a day on is one addition; 25 bytes per user.

    A head may hold some of the dims only (``dims``): a reader builds the columns an ask
    needs (``from_days``) and adds others when an ask needs them (``include``).
    """

    def __init__(self, n_users: int, spare: int = 0, dims: Iterable[Dim] = DIMS) -> None:
        self.newest = np.full(1, NO_DAY, np.int32)  # the day ages count back from
        self.dims: tuple[Dim, ...] = tuple(d for d in DIMS if d in set(dims))
        self._alloc(n_users, n_users + spare)

    def _alloc(self, n_users: int, capacity: int) -> None:
        """Fresh arrays with room for ``capacity`` users, of which the first ``n_users``
        are in use (views): growing within the room copies nothing."""
        self._last = np.full(capacity, LONG_AGO, np.uint16)
        self._val = {d: np.zeros(capacity, VALUE_DTYPES[d]) for d in self.dims}
        self._age = {d: np.full(capacity, LONG_AGO, np.uint16) for d in self.dims}
        self._views(n_users)

    @property
    def nbytes(self) -> int:
        return int(
            self._last.nbytes + sum(v.nbytes for v in (*self._val.values(), *self._age.values()))
        )

    def _views(self, n_users: int) -> None:
        self.last = self._last[:n_users]
        self.val = {d: v[:n_users] for d, v in self._val.items()}
        self.age = {d: a[:n_users] for d, a in self._age.items()}

    @classmethod
    def load(cls, path: Path, n_users: int, spare: int = 0) -> Head:
        """The head of ``path`` for ``n_users`` users (more than it has: the new ones were
        never seen), with room for ``spare`` more (``grow``)."""
        head = cls(n_users, spare)
        targets = head.arrays()
        sources = load_arrays(path, mapped=True)
        if sources.keys() != targets.keys():
            raise ValueError(f"{path}: not a head file")
        for k, source in sources.items():
            target = targets[k]
            if source.dtype != target.dtype or len(source) > len(target):
                raise ValueError(f"{path}: unexpected array {k} {source.dtype}{source.shape}")
            target[: len(source)] = source
        return head

    def grow(self, n_users: int) -> None:
        """Room for ``n_users`` users (the new ones never seen)."""
        n = len(self.last)
        if n_users <= n:
            return
        if n_users > len(self._last):  # beyond the room: move into larger arrays
            old = (self.last, self.val, self.age)
            self._alloc(n, n_users + n_users // ROOM)
            self.last[:] = old[0]
            for d in self.dims:
                self.val[d][:] = old[1][d]
                self.age[d][:] = old[2][d]
        self._views(n_users)  # the room holds never-seen users already

    @classmethod
    def rows(cls, path: Path, uid: IntArray) -> Head:
        """The rows of users ``uid`` of the head in ``path`` (mapped: only their pages are
        read), as a head of ``len(uid)`` users."""
        source = load_arrays(path, mapped=True)
        head = cls(len(uid))
        inside = uid < len(source["last"])
        at = uid[inside]
        for k, target in head.arrays().items():
            if k == "newest":
                target[:] = source[k]
            else:
                target[inside] = source[k][at]
        return head

    def copy(self) -> Head:
        """A head of its own with the same rows (moving it on leaves this one as it is)."""
        out = Head(len(self.last), dims=self.dims)
        for k, target in out.arrays().items():
            target[:] = self.arrays()[k]
        return out

    def take(self, at: IntArray) -> Head:
        """Rows ``at`` of this head, as a head of their own."""
        rows = Head(len(at), dims=self.dims)
        theirs = self.arrays()
        for k, target in rows.arrays().items():
            target[:] = theirs[k] if k == "newest" else theirs[k][at]
        return rows

    def put(self, uid: IntArray, rows: Head) -> None:
        """Set the users ``uid`` to ``rows`` (a head of ``len(uid)`` users)."""
        theirs = rows.arrays()
        for k, target in self.arrays().items():
            if k != "newest":
                target[uid] = theirs[k]

    def forget(self, uid: IntArray) -> None:
        """The users ``uid`` back to never seen (a forget: ``forgetting.py``)."""
        self.last[uid] = LONG_AGO
        for d in DIMS:
            self.val[d][uid] = 0
            self.age[d][uid] = LONG_AGO

    def save(self, path: Path) -> None:
        save_arrays(path, self.arrays())

    def arrays(self) -> dict[str, Any]:
        out: dict[str, Any] = {"newest": self.newest, "last": self.last}
        for d in self.dims:
            out[f"v_{d}"] = self.val[d]
            out[f"a_{d}"] = self.age[d]
        return out

    def include(self, other: Head) -> None:
        """Add the dims of ``other`` (a head of the same users as of the same day) that
        this one lacks."""
        if other.newest[0] != self.newest[0] or len(other.last) != len(self.last):
            raise ValueError("not a head of the same users and day")
        n, capacity = len(self.last), len(self._last)
        for d in other.dims:
            if d not in self.dims:
                self._val[d] = np.zeros(capacity, VALUE_DTYPES[d])
                self._val[d][:n] = other.val[d]
                self._age[d] = np.full(capacity, LONG_AGO, np.uint16)
                self._age[d][:n] = other.age[d]
        self.dims = tuple(d for d in DIMS if d in self._val)
        self._views(n)

    @classmethod
    def from_days(cls, parts: Iterable[DayPart], n_users: int, dims: Iterable[Dim] = DIMS) -> Head:
        """The head after ``parts`` (ascending days), with absolute days while building
        and ages once at the end: no per-day shift of every user's ages. Only ``dims``:
        each costs about three times what ``last`` does."""
        head = cls(n_users, dims=dims)
        # Never seen: so long ago that the age saturates (in int32: no masked store).
        never = -(1 << 30)
        last = np.full(n_users, never, np.int32)
        day = {d: np.full(n_users, never, np.int32) for d in head.dims}
        newest = None
        for part in parts:
            if newest is not None and part.day <= newest:
                raise ValueError(f"days must ascend: {part.day} after {newest}")
            newest = part.day
            uid = part.uid.astype(np.intp)
            last[uid] = part.day
            for d in head.dims:
                has = part.values[d] != 0
                u = uid[has]
                head.val[d][u] = part.values[d][has]
                day[d][u] = part.day
        if newest is None:
            return head
        head.newest[0] = newest
        for days, ages in ((last, head.last), *((day[d], head.age[d]) for d in head.dims)):
            np.subtract(newest, days, out=days)
            np.minimum(days, LONG_AGO, out=days)
            ages[:] = days
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
        if age == 0:  # the head's own day (the usual fold): every value of it is newest
            self.last[uid] = 0
        else:
            self.last[uid] = np.minimum(self.last[uid], age)

        def one(d: Dim) -> None:  # (each dimension its own arrays: two run at once)
            has = part.values[d] != 0
            u = uid[has]
            values = part.values[d][has]
            if age:
                take = self.age[d][u] >= age
                u, values = u[take], values[take]
            self.val[d][u] = values
            self.age[d][u] = age

        on_two_cores(one, self.dims, rows=len(uid))
