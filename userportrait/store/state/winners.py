"""Each user's largest key per column among one day's events: the day's winners, in numpy.

DuckDB hands the builder one row per event (uid, packed keys); reducing them here costs
about a third of a ``GROUP BY day, uid`` hash aggregate, whose groups are nearly as many
as the events (most users have one or two events a day), and it needs no sort: the
active users come out in uid order from a dense mark over all uids.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from userportrait.portrait.dims import Dim
from userportrait.store.state.cores import on_two_cores
from userportrait.store.windows import IntArray

#: A day's events count as many (dense scratch over every uid) from this share of the
#: app's users on; fewer (a flush) are reduced after a sort of their uids.
DENSE_SHARE = 1 / 16


class DailyMax:
    """Reduces one day's events at a time to per-user maxima of packed keys (-1: no key).

    Its scratch arrays (a mark and a row number per uid, for the dense path) are kept
    across days; the mark is reset after each, only where that day wrote."""

    def __init__(self, n_users: int, names: list[Dim]) -> None:
        self.n_users = n_users
        self.names = names
        self._seen: np.ndarray | None = None
        self._row: IntArray = np.zeros(0, np.int32)

    def reduce(
        self, uid: IntArray, keys: Callable[[Dim], IntArray]
    ) -> tuple[IntArray, dict[Dim, IntArray]]:
        """(the distinct uids in order, uint32; per column each one's largest key).
        ``keys(name)``: the events' keys of a column, asked for where its maxima are taken
        (half the columns in a second thread: ``cores.on_two_cores``)."""
        if len(uid) >= self.n_users * DENSE_SHARE:
            users, at = self._dense_rows(uid)
        else:
            users, at = np.unique(uid, return_inverse=True)
        best: dict[Dim, IntArray] = {}

        def one(name: Dim) -> None:
            out = np.full(len(users), -1, np.int64)
            np.maximum.at(out, at, keys(name))
            best[name] = out

        on_two_cores(one, self.names, rows=len(uid))
        return users.astype(np.uint32, copy=False), {name: best[name] for name in self.names}

    def _dense_rows(self, uid: IntArray) -> tuple[IntArray, IntArray]:
        """(the distinct uids in order, each event's row among them), without a sort."""
        # The day's users come out of a mark over every uid in order; each event then
        # finds its user's row through a uid -> row map, so the maxima are taken over
        # rows of the day's users only (small arrays, kind to the cache).
        if self._seen is None:
            self._seen = np.zeros(self.n_users, bool)
            self._row = np.zeros(self.n_users, np.int32)
        seen, row = self._seen, self._row
        seen[uid] = True
        users = np.flatnonzero(seen)
        seen[users] = False
        row[users] = np.arange(len(users), dtype=np.int32)
        return users, row[uid]


def packed(shifted: IntArray, value: IntArray) -> IntArray:
    """Keys ``time * 2**bits + value`` (``shifted``: the times times 2**bits, computed once
    for the dims that share ``bits``) that order by time, then value; -1 where the value
    is missing (-1), so that any present value wins."""
    return np.where(value >= 0, shifted + value, -1)
