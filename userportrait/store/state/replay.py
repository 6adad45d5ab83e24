"""The replay: the span histograms and head of the days from a changed one on, day by day.

An app update (``app_update.py``) rebuilds the touched days; the end days they can reach
are then replayed in day order from the latest kept head before the first of them (one
day for a new day or a live flush, two for late events for yesterday, everything for a
first load). Only the end days a change can reach are replayed: those up to 365 days
after a changed day or after the old first day of a user whose first day moved; further
days with data (far-future ones) keep their files, and the replay starts again after such
a gap from the days before it (docs/performance.md, "Odd input").
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from userportrait.store.state.days import day_date, day_number
from userportrait.store.state.head import LONG_AGO, ROOM, Head
from userportrait.store.state.manifest import AppState
from userportrait.store.state.overlay import FoldNames
from userportrait.store.state.spans import SpanCounter
from userportrait.store.windows import NO_DAY, DayPart, IntArray

#: Heads kept for the last days with data, so late events for yesterday replay two days.
KEEP_HEADS = 3
#: Has a file written by the update's writer thread: ``write(lambda: save(...))``.
FileWrite = Callable[[Callable[[], None]], None]


class Updating(Protocol):
    """What a replay reads of the app update it serves (``app_update.AppUpdate``)."""

    @property
    def app(self) -> AppState: ...

    @property
    def dir(self) -> Path: ...

    def names(self, day: str) -> FoldNames:
        """The names of ``day``'s files written at the update's version."""
        ...

    def stored_day(self, t: int) -> DayPart:
        """Day ``t``'s partition as its file holds it."""
        ...


class Replay:
    """Folds the days from ``t0`` on into the span histograms and the head, in day order,
    as they come: the rebuilt ones from the builder, the others (days after a late event)
    from their files. A rebuilt day's users have their final first day once the days up
    to it are built (a later day cannot move a first day before itself), so folding
    need not wait for the whole build.

    A day's histograms and head hold the ages of the 366 days up to it (older is
    ``LONG_AGO``, never read) and the first-day ages of its users (clipped there too).
    So an end day ``E`` changes only if a changed day or the *old* first day of a user
    whose first day moved lies in ``E - 365 .. E``; any other day keeps its files (a
    user first seen now long before ``E`` moves only the never-read age bucket
    ``HORIZON``). Which days are reached is known in time: a first day moves from a
    later day to a changed one, folded after the days before it. After a run of
    skipped days longer than a year the head and histograms are rebuilt from the days
    with data of the 365 days before the next reached day instead of folding the run.
    """

    def __init__(
        self, update: Updating, head: Head, counter: SpanCounter, t0: int, present: list[int]
    ) -> None:
        self.update = update
        self.head = head
        self.counter = counter
        self.todo = [t for t in present if t >= t0]
        self.present = present
        self.keep = set(present[-KEEP_HEADS:])
        app = update.app
        self.heads = {d: f for d, f in app.heads.items() if day_number(d) in self.keep}
        self.open: int | None = None  # the day folded last, not yet saved
        self.write: FileWrite | None = None  # the update's writer thread, while it runs
        self.head_saved: int | None = None  # the day whose head the writer saved
        self.changed: list[int] = []  # the rebuilt days (ascending)
        self.old_firsts = np.empty(0, np.int32)  # moved users' old first days (unique)
        self.skipped: list[int] = []  # days left as they are since the last one folded

    @classmethod
    def start(
        cls, update: Updating, t0: int, present: list[int], first: IntArray, n: int
    ) -> Replay:
        """The span histograms and head (of ``n`` users) as of the day before ``t0``: from
        the latest kept head before ``t0`` (a new day, a live flush, late events for
        yesterday), else from a head built from the days before ``t0`` (a first load, a
        back-fill). Users the build adds cannot be active before ``t0``."""
        app = update.app
        sizes = app.value_sizes()
        kept = {
            day_number(d): f for d, f in app.heads.items() if day_number(d) < t0 and d in app.spans
        }
        if kept:
            start = max(kept)
            # (room for the users this build adds: no copy of every user's row to grow)
            head = Head.load(update.dir / kept[start], n, spare=n // ROOM)
            spans = update.dir / app.spans[day_date(start).isoformat()]
            counter = SpanCounter.load(spans, sizes, start)
        else:
            before = (update.stored_day(t) for t in present if t0 - LONG_AGO <= t < t0)
            head = Head.from_days(before, n)
            head.advance(t0 - 1)
            counter = SpanCounter.from_head(head, first, sizes)
        return cls(update, head, counter, t0, present)

    def moved(self, old: IntArray, day: int) -> None:
        """Note the old first days of the users of ``day`` first seen later until now."""
        later = old[(old > day) & (old != NO_DAY)]
        if len(later):
            self.old_firsts = np.union1d(self.old_firsts, later)

    def reached(self, t: int) -> bool:
        """Whether a change can reach the histograms and head of end day ``t``."""
        i = bisect.bisect_right(self.changed, t)
        if i and t - self.changed[i - 1] < LONG_AGO:
            return True
        j = int(np.searchsorted(self.old_firsts, t, side="right"))
        return bool(j and t - int(self.old_firsts[j - 1]) < LONG_AGO)

    def _resume(self, t: int, first: IntArray) -> None:
        """Before folding ``t``: the days skipped since the last one folded are folded
        too, or, when they are many and not all within a year of ``t``, the head and
        histograms are rebuilt as of ``t - 1`` from the days with data before ``t``
        whose ages are under ``LONG_AGO`` (none of them rebuilt now: ``t`` would not be
        past a skipped day otherwise)."""
        skipped, self.skipped = self.skipped, []
        if not skipped:
            return
        present = self.present
        window = present[
            bisect.bisect_right(present, t - LONG_AGO) : bisect.bisect_left(present, t)
        ]
        if len(window) >= len(skipped) or set(window) & set(self.changed):
            for u in skipped:
                self._fold(self.update.stored_day(u), first, resume=False)
            return
        self.close()
        head = Head.from_days((self.update.stored_day(u) for u in window), len(first))
        head.advance(t - 1)
        self.head = head
        self.counter = SpanCounter.from_head(head, first, self.update.app.value_sizes())

    def fold_until(self, end: int, first: IntArray) -> None:
        """Fold the days before ``end`` not folded yet, from their files (those no change
        reaches are skipped)."""
        while self.todo and self.todo[0] < end:
            t = self.todo[0]
            if self.reached(t):
                self._fold(self.update.stored_day(t), first)
            else:
                self.todo.pop(0)
                self.skipped.append(t)

    def fold(self, part: DayPart, first: IntArray) -> None:
        """Fold ``part``: the next day, or another slice of the day folded last (its users
        not in the slices before)."""
        if part.day == self.open:
            uid = part.uid.astype(np.intp)
            self.counter.regrow(self.head, part, first, first[uid] < part.day)
            return
        if not self.todo or self.todo[0] != part.day:
            raise ValueError(f"day {part.day} out of order")
        self._fold(part, first)

    def _fold(self, part: DayPart, first: IntArray, resume: bool = True) -> None:
        if resume:  # (a skipped day folded by _resume is off the to-do list already)
            self._resume(part.day, first)
            self.todo.pop(0)
        self.close()
        self.counter.fold(self.head, part, first, applied=self._head_saver(part))
        self.open = part.day

    def _head_saver(self, part: DayPart) -> Callable[[], None] | None:
        """For the last day to fold, complete and kept: have the writer save the head as
        soon as the day is applied to it, while the histograms count its users in."""
        write = self.write
        if write is None or self.todo or part.more or part.day not in self.keep:
            return None
        head, path = self.head, self._head_path(part.day)

        def save() -> None:
            write(lambda: head.save(path))
            self.head_saved = part.day

        return save

    def _head_path(self, t: int) -> Path:
        (self.update.dir / "heads").mkdir(exist_ok=True)
        return self.update.dir / self.update.names(day_date(t).isoformat()).head

    def close(self) -> None:
        """Save the span histograms (and head) of the day folded last, once complete."""
        if self.open is None:
            return
        update, t = self.update, self.open
        self.open = None
        day = day_date(t).isoformat()
        update.app.spans[day] = update.names(day).spans
        self.counter.save(update.dir / update.app.spans[day])
        if t in self.keep:
            self.heads[day] = update.names(day).head
            if self.head_saved != t:
                self.head.save(self._head_path(t))
