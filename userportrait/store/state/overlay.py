"""The newest day's overlay: what live flushes changed since the day's files were written.

A flush must cost its batch, not its day (issue 14). Rewriting the newest day's partition,
winners' times and head (about 250 bytes per user of the app) on every 1,000-event flush
would cost the day; instead a flush reads only its users' rows of those files (mapped,
``npys.py``) and writes the overlay: the users flushed since, with their values and times
of the day and their head rows. When the overlay outgrows ``OVERLAY_USERS`` the day's
files are written anew with it folded in, and it starts empty again.

Users the flushes added to the dictionary are not in the ``first_day`` file until then:
their first day is the overlay's day (``first_days``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from userportrait.portrait.dims import DIMS
from userportrait.store.state.days import VALUE_DTYPES, find, overlaid
from userportrait.store.state.head import Head
from userportrait.store.state.npys import load_arrays, save_arrays
from userportrait.store.windows import DayPart, IntArray

#: Users in an overlay before the day's files are rewritten with it: about 90 bytes each,
#: so a flush writes at most ~6 MB however large the day is.
OVERLAY_USERS = 1 << 16


@dataclass(slots=True)
class Overlay:
    """The newest day's changed users: their day values and times, and head rows."""

    part: DayPart  # sorted uids, values and keys as merged so far
    head: Head  # len(part.uid) rows, as of the day

    @classmethod
    def empty(cls, day: int) -> Overlay:
        values = {d: np.zeros(0, VALUE_DTYPES[d]) for d in DIMS}
        keys = {d: np.zeros(0, np.int64) for d in DIMS}
        head = Head(0)
        head.newest[0] = day
        return cls(DayPart(day, np.zeros(0, np.uint32), values, keys), head)

    @classmethod
    def load(cls, path: Path, day: int) -> Overlay:
        z = load_arrays(path)
        values = {d: z[f"v:{d}"] for d in DIMS}
        keys = {d: z[f"k:{d}"] for d in DIMS}
        head = Head(len(z["uid"]))
        for k, target in head.arrays().items():
            target[:] = z[f"h:{k}"]
        if int(head.newest[0]) != day:
            raise ValueError(f"{path}: an overlay of another day")
        return cls(DayPart(day, z["uid"], values, keys), head)

    def save(self, path: Path) -> None:
        assert self.part.keys is not None
        arrays = {"uid": self.part.uid}
        arrays.update({f"v:{d}": self.part.values[d] for d in DIMS})
        arrays.update({f"k:{d}": self.part.keys[d] for d in DIMS})
        arrays.update({f"h:{k}": a for k, a in self.head.arrays().items()})
        save_arrays(path, arrays)

    def __len__(self) -> int:
        return len(self.part.uid)

    def rows(self, uid: IntArray) -> tuple[IntArray, IntArray]:
        """For users ``uid``: whether each is in the overlay, and where."""
        at, inside = find(self.part.uid, uid)
        return inside, at

    def updated(self, part: DayPart, head: Head) -> Overlay:
        """This overlay with the users of ``part`` (sorted; with keys) set to ``part`` and
        ``head`` (a head of ``len(part.uid)`` rows)."""
        merged = overlaid(self.part, part)
        rows = Head(len(merged.uid))
        rows.newest[:] = self.head.newest
        mine = np.searchsorted(merged.uid, self.part.uid)
        theirs = np.searchsorted(merged.uid, part.uid)
        rows.put(mine, self.head)
        rows.put(theirs, head)
        return Overlay(merged, rows)


def first_days(first: IntArray, n_users: int, overlay_day: int | None) -> IntArray:
    """The first day of every user: the ``first_day`` file's, then the overlay's day for
    the users flushes added since it was written."""
    missing = n_users - len(first)
    if missing <= 0 or overlay_day is None:
        return first
    return np.concatenate([first, np.full(missing, overlay_day, np.int32)])
