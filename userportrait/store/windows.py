"""Portrait counts of many windows at once from day partitions (pure numpy, no I/O).

A day partition holds, per user active that day, the day's winning value of each dimension
(0 = none that day). Days are disjoint in time, so in a window the latest day carrying a
value wins. Seen from one record (user, day ``t``, value ``x``): it is the user's answer
for every window that contains ``t`` and ends before the user's next day with a value,
``t'``. For windows of length ``L`` that is the window ends ``e`` in ``[t, min(t+L, t'))``,
an interval, so every record adds +1 at ``t`` and -1 at ``min(t+L, t')`` to a difference
array over (window end, value); a cumulative sum gives the counts of *all* windows of
length ``L`` in one pass over the days, newest first (``t'`` comes from a dense
``next_day`` array per dimension; no sort and no comparison of timestamps).

A user is new in the window ending at ``e`` iff ``first_day >= e-L+1``, i.e. ``e <
first_day+L``, which clips the interval once more. Users without a value are 未知:
active users minus the users counted under a value. See docs/performance.md.

The difference arrays span the wanted ends (plus the longest window before them), so the
ends are taken in groups of at most ``MAX_SPAN`` days: memory follows the data's days,
never the calendar between them (a batch holding 1970 and 9999 costs two small groups).

For one or a few windows ``few_windows`` is cheaper: the days inside each window are
applied oldest first, later days overwriting earlier ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from userportrait.portrait.dims import DIMS, Dim

IntArray = np.ndarray[Any, np.dtype[np.integer[Any]]]
#: first_day value of a uid with no data (cannot happen for users in a partition).
NO_DAY = np.iinfo(np.int32).max
#: Most days one pass of ``compute_windows`` spans (first window start to last end).
MAX_SPAN = 192


@dataclass(frozen=True, slots=True)
class DayPart:
    """One (appid, day): the users active that day and their winning value ids per dim."""

    day: int  # days since 1970-01-01
    uid: IntArray  # uint32, unique
    values: Mapping[Dim, IntArray]  # aligned with uid; 0 = no value that day

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


def compute_windows(
    days: Mapping[int, DayPart],
    first_day: IntArray,
    sizes: Mapping[Dim, int],
    wanted: Sequence[tuple[int, Sequence[int]]],
    tick: Callable[[float], None] | None = None,
) -> dict[tuple[int, int], WindowCounts]:
    """Counts of the windows ``(length L, end e)`` for every ``L, ends`` in ``wanted``.

    ``days`` must hold every day partition that any wanted window covers (missing days
    are days without data); ``sizes`` is one more than the largest value id per dim.
    ``tick`` is told the fraction of days done.
    """
    groups = _span_groups([(n, e) for n, ends in wanted for e in set(ends)])
    out: dict[tuple[int, int], WindowCounts] = {}
    for g, group in enumerate(groups):

        def one_of_all(frac: float, g: int = g) -> None:
            if tick is not None:
                tick((g + frac) / len(groups))

        by_length: dict[int, list[int]] = {}
        for n, e in group:
            by_length.setdefault(n, []).append(e)
        out.update(_compute_span(days, first_day, sizes, sorted(by_length.items()), one_of_all))
    return out


def _span_groups(pairs: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """``(length, end)`` pairs in groups, by end, each spanning at most ``MAX_SPAN`` days
    from its first window's start to its last end (a longer window is a group alone)."""
    groups: list[list[tuple[int, int]]] = []
    lo = 0
    for n, e in sorted(pairs, key=lambda p: (p[1], p[0])):
        if groups and e - lo < MAX_SPAN:
            groups[-1].append((n, e))
            lo = min(lo, e - n + 1)
        else:
            groups.append([(n, e)])
            lo = e - n + 1
    return groups


def _compute_span(
    days: Mapping[int, DayPart],
    first_day: IntArray,
    sizes: Mapping[Dim, int],
    wanted: Sequence[tuple[int, Sequence[int]]],
    tick: Callable[[float], None],
) -> dict[tuple[int, int], WindowCounts]:
    """``compute_windows`` for ends close together: dense arrays over their span."""
    wanted = [(n, sorted(set(ends))) for n, ends in wanted if ends]
    if not wanted:
        return {}
    lo = min(ends[0] - n + 1 for n, ends in wanted)
    hi = max(ends[-1] for _, ends in wanted)
    span = hi - lo + 2  # slot hi+1 - lo collects the -1s of intervals that run past hi
    n_users = len(first_day)
    lengths = sorted({n for n, _ in wanted})
    # Difference arrays per length: users active / new, and per dim value counts.
    act = {n: np.zeros(span, np.int64) for n in lengths}
    new = {n: np.zeros(span, np.int64) for n in lengths}
    hist_act = {n: {d: np.zeros(span * sizes[d], np.int64) for d in DIMS} for n in lengths}
    hist_new = {n: {d: np.zeros(span * sizes[d], np.int64) for d in DIMS} for n in lengths}
    next_act = np.full(n_users, hi + 1, np.int32)
    next_val = {d: np.full(n_users, hi + 1, np.int32) for d in DIMS}
    todo = sorted((t for t in days if lo <= t <= hi), reverse=True)
    for i, t in enumerate(todo):
        tick(i / len(todo))
        part = days[t]
        uid = part.uid
        fd = first_day[uid]
        nxt = next_act[uid]
        next_act[uid] = t
        for n in lengths:
            stop = np.minimum(nxt, t + n)
            _interval(act[n], t - lo, stop - lo, span)
            stop_new = np.minimum(stop, fd + n)
            is_new = stop_new > t
            _interval(new[n], t - lo, stop_new[is_new] - lo, span)
        for d in DIMS:
            vals = part.values[d]
            has = vals != 0
            u, x = uid[has], vals[has].astype(np.int64)
            nxt = next_val[d][u]
            next_val[d][u] = t
            size = sizes[d]
            for n in lengths:
                stop = np.minimum(nxt, t + n)
                _hist_interval(hist_act[n][d], t - lo, stop - lo, x, size, span)
                stop_new = np.minimum(stop, fd[has] + n)
                is_new = stop_new > t
                _hist_interval(hist_new[n][d], t - lo, stop_new[is_new] - lo, x[is_new], size, span)
    out: dict[tuple[int, int], WindowCounts] = {}
    for n, ends in wanted:
        idx = np.asarray(ends) - lo
        totals = {"act": np.cumsum(act[n])[idx], "new": np.cumsum(new[n])[idx]}
        per: dict[str, dict[Dim, Any]] = {"act": {}, "new": {}}
        for key, hist in (("act", hist_act[n]), ("new", hist_new[n])):
            for d in DIMS:
                grid = np.cumsum(hist[d].reshape(span, sizes[d]), axis=0)[idx]
                grid[:, 0] = totals[key] - grid[:, 1:].sum(axis=1)  # 未知
                per[key][d] = grid
        for i, e in enumerate(ends):
            out[(n, e)] = WindowCounts(
                new={d: per["new"][d][i] for d in DIMS},
                active={d: per["act"][d][i] for d in DIMS},
            )
    return out


def _interval(diff: IntArray, start: int, stops: IntArray, span: int) -> None:
    """+1 at ``start`` and -1 at each stop (one per user)."""
    diff[start] += len(stops)
    diff -= np.bincount(stops, minlength=span)[:span]


def _hist_interval(
    diff: IntArray, start: int, stops: IntArray, x: IntArray, size: int, span: int
) -> None:
    diff[start * size : (start + 1) * size] += np.bincount(x, minlength=size)
    diff -= np.bincount(stops * size + x, minlength=span * size)


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
