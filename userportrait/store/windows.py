"""Portrait counts of one or a few windows from day partitions (pure numpy, no I/O).

A day partition holds, per user active that day, the day's winning value of each dimension
(0 = none that day). Days are disjoint in time, so in a window the latest day carrying a
value wins: the days inside a window are applied oldest first, each overwriting the values
of its users, and what is left is each user's latest value in the window. A user is new
in the window when their first day is inside it. Users without a value are 未知.

The store answers windows up to ``state.spans.HORIZON`` days from span histograms; this is
the path for longer windows, and the oracle the histograms are tested against.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from userportrait.portrait.dims import DIMS, Dim

IntArray = np.ndarray[Any, np.dtype[np.integer[Any]]]
#: first_day value of a uid with no data (cannot happen for users in a partition).
NO_DAY = np.iinfo(np.int32).max


@dataclass(frozen=True, slots=True)
class DayPart:
    """One (appid, day): the users active that day and their winning value ids per dim."""

    day: int  # days since 1970-01-01
    uid: IntArray  # uint32, unique
    values: Mapping[Dim, IntArray]  # aligned with uid; 0 = no value that day
    #: When known: per dim the winning event's microseconds since the day's midnight
    #: (-1 = no value), so that more events of the day can be merged in (newest day only).
    keys: Mapping[Dim, IntArray] | None = None
    #: More users of this day follow in the next part (a day built in slices of users).
    more: bool = False

    @property
    def nbytes(self) -> int:
        return int(self.uid.nbytes + sum(v.nbytes for v in self.values.values()))


@dataclass(slots=True)
class WindowCounts:
    """Counts of one window: per audience and dim, a dense array value id -> users.

    Index 0 is 未知. ``active[dim].sum()`` is the number of active users for every dim.
    """

    new: dict[Dim, IntArray]
    active: dict[Dim, IntArray]


def one_window(
    days: Mapping[int, DayPart],
    first_day: IntArray,
    sizes: Mapping[Dim, int],
    n: int,
    end: int,
) -> WindowCounts:
    """Counts of the one window of ``n`` days ending on ``end`` (the ad-hoc path)."""
    return few_windows(days, first_day, sizes, [(n, end)])[(n, end)]


def few_windows(
    days: Mapping[int, DayPart],
    first_day: IntArray,
    sizes: Mapping[Dim, int],
    wanted: Sequence[tuple[int, int]],
) -> dict[tuple[int, int], WindowCounts]:
    """Counts of a few windows ``(length, end)``, each day partition read once.

    Cheaper than ``compute_windows`` when the windows are few: the days inside a window
    are applied oldest first, each overwriting the values of its users, so what is left
    is the latest value in the window (0 where a user carried none). Memory: a bool and
    the value ids per user and window.
    """
    wanted = sorted(set(wanted))
    if not wanted:
        return {}
    n_users = len(first_day)
    seen = {w: np.zeros(n_users, bool) for w in wanted}
    value: dict[tuple[int, int], dict[Dim, IntArray]] = {w: {} for w in wanted}
    lo = min(e - n + 1 for n, e in wanted)
    hi = max(e for _, e in wanted)
    for t in sorted(t for t in days if lo <= t <= hi):
        inside = [(n, e) for n, e in wanted if e - n + 1 <= t <= e]
        if not inside:
            continue
        part = days[t]
        uid = part.uid.astype(np.intp)  # once, not once per fancy index
        has = {d: part.values[d] != 0 for d in DIMS}
        for d in DIMS:
            u, vals = uid[has[d]], part.values[d][has[d]]
            for w in inside:
                if d not in value[w]:  # in the partition's own (small) dtype
                    value[w][d] = np.zeros(n_users, vals.dtype)
                value[w][d][u] = vals
        for w in inside:
            seen[w][uid] = True
    out: dict[tuple[int, int], WindowCounts] = {}
    for n, e in wanted:
        active = np.flatnonzero(seen[(n, e)])
        new = first_day[active] >= e - n + 1
        counts = WindowCounts(new={}, active={})
        for d in DIMS:
            held = value[(n, e)].get(d)
            v = held[active] if held is not None else np.zeros(len(active), np.int64)
            counts.active[d] = np.bincount(v, minlength=sizes[d])
            counts.new[d] = np.bincount(v[new], minlength=sizes[d])
        out[(n, e)] = counts
    return out


@dataclass(slots=True)
class WindowUsers:
    """The users active in one window, each with their latest value per dim (0: none in
    the window) and whether they are new: what filters and cross-tabs count."""

    uid: IntArray  # ascending
    new: np.ndarray[Any, np.dtype[np.bool_]]
    values: dict[Dim, IntArray]  # aligned with uid


def window_users(days: Mapping[int, DayPart], first_day: IntArray, n: int, end: int) -> WindowUsers:
    """Per user of the window of ``n`` days ending on ``end``, the values ``one_window``
    counts: the days applied oldest first, each overwriting the values of its users."""
    begin = end - n + 1
    n_users = len(first_day)
    seen = np.zeros(n_users, bool)
    value: dict[Dim, IntArray] = {}
    for t in sorted(t for t in days if begin <= t <= end):
        part = days[t]
        uid = part.uid.astype(np.intp)
        for d in DIMS:
            vals = part.values[d]
            has = vals != 0
            if d not in value:
                value[d] = np.zeros(n_users, vals.dtype)
            value[d][uid[has]] = vals[has]
        seen[uid] = True
    active = np.flatnonzero(seen)
    return WindowUsers(
        uid=active,
        new=first_day[active] >= begin,
        values={
            d: value[d][active] if d in value else np.zeros(len(active), np.int64) for d in DIMS
        },
    )


def window_values(
    days: Iterable[DayPart], uid: IntArray, n_users: int, dims: Sequence[Dim]
) -> dict[Dim, IntArray]:
    """Of the users ``uid`` only, the latest value of each of ``dims`` in ``days`` (the
    window's days, ascending; 0: none): ``window_users``' values of a few users, for the
    segment of a filter without a pass over every user's rows of the other dims."""
    member = np.zeros(n_users, bool)  # (a byte a user: its gathers stay in the cache)
    member[uid] = True
    where = np.zeros(n_users, np.int32)
    where[uid] = np.arange(len(uid), dtype=np.int32)
    out: dict[Dim, IntArray] = {}
    for part in days:
        rows = np.flatnonzero(member[part.uid])
        at = where[part.uid[rows]]
        for d in dims:
            vals = part.values[d][rows]
            if d not in out:  # in the partition's own (small) dtype
                out[d] = np.zeros(len(uid), vals.dtype)
            has = np.flatnonzero(vals)
            out[d][at[has]] = vals[has]
    return {d: out[d] if d in out else np.zeros(len(uid), np.int64) for d in dims}


def segment(users: WindowUsers, filters: Sequence[tuple[Dim, int]]) -> WindowUsers:
    """The users whose value of each filtered dim is the filter's id (0: 未知)."""
    if not filters:
        return users
    keep = np.ones(len(users.uid), bool)
    for d, v in filters:
        keep &= users.values[d] == v
    return WindowUsers(
        users.uid[keep], users.new[keep], {d: a[keep] for d, a in users.values.items()}
    )


def segment_counts(users: WindowUsers, sizes: Mapping[Dim, int]) -> WindowCounts:
    """``one_window``'s counts of these users."""
    out = WindowCounts(new={}, active={})
    new = users.new.view(np.int8)
    for d in DIMS:
        v = users.values[d].astype(np.intp)
        # A profile may fill a value no event had (beyond ``sizes``): room for it too.
        top = max(sizes[d], int(v.max()) + 1 if len(v) else 0)
        # One pass for both audiences: bin 2 * value + new.
        both = np.bincount(v * 2 + new, minlength=2 * top)
        pairs = both.reshape(-1, 2)
        out.new[d] = pairs[:, 1].copy()
        out.active[d] = pairs.sum(axis=1)
    return out


def cross_counts(
    users: WindowUsers, by: tuple[Dim, Dim]
) -> tuple[dict[tuple[int, int], int], dict[tuple[int, int], int]]:
    """(new, active) users per pair of ids of the dims ``by``."""
    a = users.values[by[0]]
    b = users.values[by[1]]
    if not len(a):
        return {}, {}
    width = int(b.max()) + 1
    # One bincount (not np.unique: no sort of the users) for both audiences: bin
    # 2 * (a * width + b) + new.
    flat = a.astype(np.intp)
    flat *= 2 * width
    flat += b
    flat += b
    flat += users.new
    both = np.bincount(flat, minlength=2 * (int(a.max()) + 1) * width).reshape(-1, 2)
    out: list[dict[tuple[int, int], int]] = []
    for cells in (both[:, 1], both.sum(axis=1)):
        keys = np.flatnonzero(cells)
        out.append(
            {
                (k // width, k % width): c
                for k, c in zip(keys.tolist(), cells[keys].tolist(), strict=True)
            }
        )
    return out[0], out[1]
