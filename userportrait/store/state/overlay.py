"""The newest day's overlay: what live flushes changed since the day's files were written.

A flush must cost its batch, not its day (docs/performance.md). Rewriting the newest day's
partition, winners' times and head (about 250 bytes per user of the app) on every
1,000-event flush would cost the day; instead a flush reads only its users' rows of those
files (mapped, ``npys.py``) and writes the overlay: the users flushed since, with their
values and times of the day and their head rows. Once the overlay outgrows
``OVERLAY_USERS`` the server's folder writes the day's files anew with it folded in, off
the flushes' path (``folding.py``); a flush folds it itself only past
``OVERLAY_USERS_MAX`` (no folder: a CLI writer, or a folder that cannot keep up).

Users the flushes added to the dictionary are not in the ``first_day`` file until then:
their first day is the overlay's day (``first_days``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from userportrait.portrait.dims import DIMS
from userportrait.store.durable import atomic_write
from userportrait.store.state.days import (
    VALUE_DTYPES,
    day_number,
    find,
    load_day,
    overlaid,
    save_day,
    save_keys,
)
from userportrait.store.state.head import Head
from userportrait.store.state.manifest import AppState
from userportrait.store.state.npys import load_arrays, save_arrays
from userportrait.store.windows import DayPart, IntArray

#: Users in an overlay before the folder writes the day's files anew with it (about 90
#: bytes each: a flush writes ~6 MB of overlay then, however large the day is).
OVERLAY_USERS = 1 << 16
#: Users in an overlay before a flush folds it itself (~24 MB of overlay per flush).
OVERLAY_USERS_MAX = 1 << 18


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

    @staticmethod
    def users(path: Path) -> int:
        """How many users the overlay file ``path`` holds (its header only)."""
        return len(load_arrays(path, mapped=True)["uid"])

    def take(self, rows: IntArray) -> Overlay:
        """Rows ``rows`` (ascending) of this overlay, as an overlay of their own."""
        assert self.part.keys is not None
        values = {d: self.part.values[d][rows] for d in DIMS}
        keys = {d: self.part.keys[d][rows] for d in DIMS}
        return Overlay(
            DayPart(self.part.day, self.part.uid[rows], values, keys), self.head.take(rows)
        )

    def since(self, older: Overlay) -> Overlay:
        """The rows of this overlay that ``older`` (an earlier overlay of the day, now
        folded into the day's files) does not hold as they are: what is left to overlay.
        Flushes only replace or add rows, so the day's files with ``older`` folded in and
        these rows on top are the day's files with this overlay on top."""
        assert self.part.keys is not None and older.part.keys is not None
        at, same = find(older.part.uid, self.part.uid)
        mine, theirs = np.flatnonzero(same), at[same]
        columns = [(self.part.values[d], older.part.values[d]) for d in DIMS]
        columns += [(self.part.keys[d], older.part.keys[d]) for d in DIMS]
        head, old_head = self.head.arrays(), older.head.arrays()
        columns += [(head[k], old_head[k]) for k in head if k != "newest"]
        for a, b in columns:
            same[mine] &= a[mine] == b[theirs]
        return self.take(np.flatnonzero(~same))

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


@dataclass(frozen=True, slots=True)
class FoldNames:
    """The state's files of day ``day`` (relative to the app's directory), named with
    ``tag`` (``bV``: the catalog version that writes them); ``files`` are those a fold of
    the newest day writes anew."""

    day: str
    tag: str

    @property
    def days(self) -> str:
        return f"days/{self.day}.{self.tag}.npys"

    @property
    def keys(self) -> str:
        return f"days/{self.day}.keys.{self.tag}.npys"

    @property
    def head(self) -> str:
        return f"heads/{self.day}.{self.tag}.npys"

    @property
    def spans(self) -> str:
        return f"spans/{self.day}.{self.tag}.npz"

    @property
    def first_day(self) -> str:
        return f"first_day.{self.tag}.npy"

    @property
    def overlay(self) -> str:
        """An overlay left over by a fold (``Overlay.since``)."""
        return f"days/{self.day}.overlay.{self.tag}.npys"

    def files(self) -> list[str]:
        return [self.days, self.keys, self.head, self.first_day]

    def set(self, app: AppState) -> None:
        """Make these ``app``'s newest day files, with no overlay left on them."""
        app.days[self.day] = self.days
        app.keys = {self.day: self.keys}
        app.heads[self.day] = self.head
        app.first_day = self.first_day
        app.overlay = {}


def write_folded(src: Path, app: AppState, overlay: Overlay, dst: Path, names: FoldNames) -> None:
    """Write the newest day's files of ``app`` (in ``src``) with ``overlay`` folded in to
    ``dst``: its partition, winners' times and head, and every user's first day. This
    costs the day and the app's users (a few hundred MB at 3 M users), not a batch."""
    day, t = names.day, day_number(names.day)
    for sub in ("days", "heads"):
        (dst / sub).mkdir(parents=True, exist_ok=True)
    merged = overlaid(load_day(src / app.days[day], t, src / app.keys[day]), overlay.part)
    save_day(dst / names.days, merged)
    save_keys(dst / names.keys, merged)
    del merged
    head = Head.load(src / app.heads[day], app.n_users)
    head.put(overlay.part.uid.astype(np.intp), overlay.head)
    head.save(dst / names.head)
    del head
    assert app.first_day is not None
    first = first_days(np.load(src / app.first_day), app.n_users, t)
    atomic_write(dst / names.first_day, lambda fh: np.save(fh, first))
