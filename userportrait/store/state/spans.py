"""Every window of 1 to ``HORIZON`` days as a lookup: one span histogram per end day.

Fix an end day ``E``. As of ``E`` each user has an age (days before ``E``) of the latest
activity ``l``, of the first day ``f`` and, per dimension, of the latest value ``v``. For a
window of ``s`` days ending on ``E`` a user is active when ``l < s``, new when ``f < s``,
and counted under the value when ``v < s`` (else 未知, when active); since ``l <= v`` and
``l <= f``, new and counted under the value is ``max(v, f) < s``. So per dimension two
histograms over (value, age) — by ``v`` and by ``max(v, f)`` — and two over age (``l`` and
``f``) answer every span at once: a prefix sum over ages ``< s``.

A window ending on a day ``E'`` without data is the window of ``s - (E' - E)`` days ending
on the last day with data ``E < E'``, so only days with data keep a histogram.

The histograms move from one end day to the next without a pass over every user: a day
later every age grows by one (a shift along the age axis, saturating at ``HORIZON``), and
only the users active that day change bucket (their old contribution out, the new one in;
``Head`` holds their state). ``spans/YYYY-MM-DD.bV.npz`` keeps each end day's histograms
sparse and sorted by age (CSR: ``ptr[age]``), so a query is a prefix and a bincount.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from userportrait.portrait.dims import DIMS, Dim
from userportrait.portrait.rules import WECHAT_SPANS
from userportrait.store.durable import atomic_write
from userportrait.store.state.cores import on_two_cores
from userportrait.store.state.head import LONG_AGO, Head
from userportrait.store.windows import NO_DAY, DayPart, IntArray, WindowCounts

#: The longest window answered by lookup; longer ones are counted from day partitions.
HORIZON = LONG_AGO
#: Window lengths WeChat answers (every span up to ``HORIZON`` is a lookup).
STANDARD_LENGTHS = WECHAT_SPANS
_B = HORIZON + 1  # age buckets 0..HORIZON; HORIZON = "that long ago or more, or never"
T = TypeVar("T", int, str)
_KINDS = ("a", "n")  # by the value's age (active) / by max(value age, first age) (new)


class SpanCounter:
    """Dense span histograms of one appid as of ``day``, updated day by day.

    Rows are the values seen so far, not every possible id (a few hundred of the 10,000
    city ids), so a day's update touches small arrays.
    """

    def __init__(self, sizes: dict[Dim, int], day: int) -> None:
        self.day = day
        self.row = {d: np.full(sizes[d], -1, np.int64) for d in DIMS}  # value id -> row
        self.ids = {d: [0] for d in DIMS}  # row -> value id; row 0 is "no value"
        for d in DIMS:
            self.row[d][0] = 0
        self.hist = {(k, d): np.zeros((1, _B), np.int64) for k in _KINDS for d in DIMS}
        self.last = np.zeros(_B, np.int64)
        self.first = np.zeros(_B, np.int64)

    @classmethod
    def from_head(cls, head: Head, first: IntArray, sizes: dict[Dim, int]) -> SpanCounter:
        """Histograms of every user seen by the head's newest day (one pass over users)."""
        day = int(head.newest[0])
        out = cls(sizes, day)
        seen = np.flatnonzero(first[: len(head.last)] <= day)
        out._count(head, first, seen, +1)
        return out

    @classmethod
    def load(cls, path: Path, sizes: dict[Dim, int], day: int) -> SpanCounter:
        """From a saved end day (cells no query reads — value 0, the last age — are not
        kept, and are never read afterwards either: ages only grow)."""
        out = cls(sizes, day)
        with np.load(path) as z:
            out.last[:] = z["last"]
            out.first[:] = z["first"]
            for k, d in list(out.hist):
                ptr, value, n = z[f"{k}_{d}_ptr"], z[f"{k}_{d}_value"], z[f"{k}_{d}_n"]
                age = np.repeat(np.arange(len(ptr) - 1), np.diff(ptr))
                rows = out._rows(d, value.astype(np.int64))  # grows the grid: first
                out.hist[(k, d)][rows, age] = n
        return out

    def _rows(self, d: Dim, x: IntArray) -> IntArray:
        """Rows of the value ids ``x``, adding rows for values not seen before."""
        if len(x) and int(x.max()) >= len(self.row[d]):  # ids beyond the sizes given
            wider = np.full(int(x.max()) + 1, -1, np.int64)
            wider[: len(self.row[d])] = self.row[d]
            self.row[d] = wider
        rows = self.row[d][x]
        if (rows < 0).any():
            new = np.unique(x[rows < 0])
            self.row[d][new] = np.arange(len(self.ids[d]), len(self.ids[d]) + len(new))
            self.ids[d].extend(new.tolist())
            for k in _KINDS:
                grid = self.hist[(k, d)]
                grown = np.zeros((len(self.ids[d]), _B), np.int64)
                grown[: len(grid)] = grid
                self.hist[(k, d)] = grown
            rows = self.row[d][x]
        return rows

    def fold(
        self,
        head: Head,
        part: DayPart,
        first: IntArray,
        applied: Callable[[], None] | None = None,
    ) -> None:
        """Move to ``part.day`` (after this day) and apply the day: head and histograms
        (``applied`` is called once the head has the day, before its users are counted in:
        the head is not changed after that).

        Days are replayed in order, each once, so the users of ``part`` seen before it
        (``first < day``) are in the histograms and the others enter now.
        """
        if part.day <= self.day:
            raise ValueError(f"days must ascend: {part.day} after {self.day}")
        self._shift(part.day - self.day)
        self.day = part.day
        head.advance(part.day)
        uid = part.uid.astype(np.intp)
        self._count(head, first, uid[first[uid] < part.day], -1)
        head.apply(part)
        if applied is not None:
            applied()
        self._count(head, first, uid, +1)

    def regrow(
        self, head: Head, part: DayPart, first: IntArray, counted: np.ndarray[Any, Any]
    ) -> None:
        """Apply more of this very day (a live flush): the users of ``part`` that were
        counted (``counted``, a mask) go out as the head has them, and all of them in as
        they are now (``part`` holds their merged values of the day)."""
        if part.day != self.day or int(head.newest[0]) != self.day:
            raise ValueError(f"day {part.day} is not the histograms' day {self.day}")
        uid = part.uid.astype(np.intp)
        self._count(head, first, uid[counted], -1)
        head.apply(part)
        self._count(head, first, uid, +1)

    def _shift(self, k: int) -> None:
        if k <= 0:
            return
        for grid in (*self.hist.values(), self.last[None, :], self.first[None, :]):
            if k >= HORIZON:
                grid[:, HORIZON] = grid.sum(axis=1)
                grid[:, :HORIZON] = 0
                continue
            tail = grid[:, HORIZON - k :].sum(axis=1)
            grid[:, k:HORIZON] = grid[:, : HORIZON - k].copy()
            grid[:, :k] = 0
            grid[:, HORIZON] = tail

    def _count(self, head: Head, first: IntArray, uid: IntArray, sign: int) -> None:
        """Add (+1) or remove (-1) the users ``uid`` as the head and ``first`` have them."""
        if not len(uid):
            return
        f = np.subtract(self.day, first[uid], dtype=np.int64)
        np.clip(f, 0, HORIZON, out=f)
        self._add(self.first, f, sign)
        self._add(self.last, head.last[uid].astype(np.int64), sign)

        def one(d: Dim) -> None:  # (each dimension its own arrays: two run at once)
            x = self._rows(d, head.val[d][uid].astype(np.int64))
            x *= _B
            v = head.age[d][uid].astype(np.int64)
            self._add(self.hist[("a", d)].reshape(-1), x + v, sign)
            np.maximum(v, f, out=v)
            self._add(self.hist[("n", d)].reshape(-1), x + v, sign)

        on_two_cores(one, DIMS, rows=len(uid))

    @staticmethod
    def _add(target: IntArray, keys: IntArray, sign: int) -> None:
        counts = np.bincount(keys, minlength=len(target))
        if sign > 0:
            target += counts
        else:
            target -= counts

    def save(self, path: Path) -> None:
        arrays: dict[str, Any] = {"last": self.last, "first": self.first}
        for (k, d), grid in self.hist.items():
            ages, row = np.nonzero(grid[1:, :HORIZON].T)  # row 0 (no value) is never read
            row += 1
            ids = np.asarray(self.ids[d], np.int32)
            arrays[f"{k}_{d}_ptr"] = np.searchsorted(ages, np.arange(HORIZON + 1))
            arrays[f"{k}_{d}_value"] = ids[row]
            arrays[f"{k}_{d}_n"] = grid[row, ages].astype(np.int32)
        atomic_write(path, lambda fh: np.savez(fh, **arrays))


def remove_users(src: Path, dst: Path, head: Head, first: IntArray, uid: IntArray) -> None:
    """The span histograms of ``src`` (an end day's file) without the users ``uid`` as
    ``head`` (as of that day) and ``first`` have them, written to ``dst``: a forget
    (``forgetting.py``). The saved cells are patched where they are, not unpacked into
    the dense grids: each of the users' cells must be there (ValueError otherwise: the
    file does not hold them)."""
    day = int(head.newest[0])
    with np.load(src) as z:
        arrays: dict[str, Any] = {k: z[k] for k in z.files}
    f = np.subtract(day, first[uid], dtype=np.int64)
    np.clip(f, 0, HORIZON, out=f)
    for name, ages in (("last", head.last[uid].astype(np.int64)), ("first", f)):
        arrays[name] = arrays[name] - np.bincount(ages, minlength=_B).astype(arrays[name].dtype)
    for d in DIMS:
        value = head.val[d][uid].astype(np.int64)
        v = head.age[d][uid].astype(np.int64)
        for k, age in (("a", v), ("n", np.maximum(v, f))):
            held = (value != 0) & (age < HORIZON)  # (the cells a file keeps)
            _remove_cells(arrays, f"{k}_{d}", value[held], age[held])
    atomic_write(dst, lambda fh: np.savez(fh, **arrays))


def _remove_cells(arrays: dict[str, Any], key: str, value: IntArray, age: IntArray) -> None:
    """One user out of the sparse cell (age, value) per pair: counts down, emptied cells
    dropped, ``ptr`` recounted."""
    if not len(value):
        return
    ptr, ids, n = arrays[f"{key}_ptr"], arrays[f"{key}_value"], arrays[f"{key}_n"]
    cell_age = np.repeat(np.arange(len(ptr) - 1), np.diff(ptr))
    cells = (cell_age << 32) | ids.astype(np.int64)
    order = np.argsort(cells, kind="stable")
    wanted, count = np.unique((age << 32) | value, return_counts=True)
    at = np.searchsorted(cells, wanted, sorter=order)
    pos = order[np.minimum(at, max(len(cells) - 1, 0))] if len(cells) else at
    found = np.asarray(at < len(cells)) & (cells[pos] == wanted if len(cells) else False)
    if not found.all():
        raise ValueError(f"{key}: {int((~found).sum())} cells of the users are not there")
    n = n.copy()
    n[pos] -= count.astype(n.dtype)
    if (n < 0).any():
        raise ValueError(f"{key}: more users taken out than a cell holds")
    keep = n > 0
    arrays[f"{key}_ptr"] = np.searchsorted(cell_age[keep], np.arange(HORIZON + 1))
    arrays[f"{key}_value"], arrays[f"{key}_n"] = ids[keep], n[keep]


class SpanTable:
    """One saved end day, for queries: counts of any span ending on it or after it."""

    def __init__(self, path: Path) -> None:
        with np.load(path) as z:
            self.arrays = {k: z[k] for k in z.files}

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values())

    def counts(self, span: int, sizes: dict[Dim, int]) -> WindowCounts:
        """The window of ``span`` (1..HORIZON) days ending on this end day."""
        if not 1 <= span <= HORIZON:
            raise ValueError(f"span {span} outside 1..{HORIZON}")
        a = self.arrays
        total = {"a": int(a["last"][:span].sum()), "n": int(a["first"][:span].sum())}
        out = WindowCounts(new={}, active={})
        for k, target in (("a", out.active), ("n", out.new)):
            for d in DIMS:
                stop = int(a[f"{k}_{d}_ptr"][span])
                counts = np.bincount(
                    a[f"{k}_{d}_value"][:stop],
                    weights=a[f"{k}_{d}_n"][:stop],
                    minlength=sizes[d],
                ).astype(np.int64)
                counts[0] = total[k] - counts.sum()  # 未知: active (new) without a value
                target[d] = counts
        return out


def end_day_for(days: Sequence[T], end: T) -> T | None:
    """The last day with data at or before ``end`` (``days`` ascending: day numbers, or
    ISO dates, which sort as the days do), or None."""
    i = bisect.bisect_right(days, end)
    return days[i - 1] if i else None


__all__ = ["HORIZON", "NO_DAY", "SpanCounter", "SpanTable", "end_day_for", "remove_users"]
