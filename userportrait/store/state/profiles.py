"""Profiles in the incremental store (docs/semantics.md): the users whose gaps a profile fills.

The span histograms count a user with no event value for a dimension in the window as
未知. With profiles, such a user (active in the window, no event in it carrying the
dimension) is counted under the profile value instead, when the profile has one. So a
window's counts from the histograms (or from the day partitions) are corrected here, for
the users with a profile only:

* ``ProfileUsers``: per uid of the app's user dictionary that has a profile, the latest
  profile's province, city and gender ids and birth date (one DuckDB query joining the
  latest profiles with the user dictionary; cached per state and profile version);
* ``ProfileDays``: as of an end day, per such user the last day active and per dimension
  the last day with an event value, over the ``HORIZON`` days before it (one walk over
  those day partitions, cached per end day): any window of up to ``HORIZON`` days
  ending there is then a lookup in cumulative counts by profile value and age built once
  per walk (``fill``, ``_Fill``; ages once per window end day, for the age on it);
* a window longer than ``HORIZON`` days walks its own days (``ProfileDays.walk``).

The rule is the reference engine's (``engine/reference.py``); ``tests/test_engines_agree.py``
and ``tests/test_profile_semantics.py`` keep them equal.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np

from userportrait.portrait.dims import AGE_BUCKET_UPPER, Dim
from userportrait.sqltext import sql_str
from userportrait.store.lake import Lake
from userportrait.store.profiles import latest_profiles_sql
from userportrait.store.windows import DayPart, IntArray, WindowCounts

#: Dimensions a profile fills, with the profile column of each (ages: from the birth date).
FILLED: Final[dict[Dim, str]] = {
    "province": "province_id",
    "city": "city_id",
    "genders": "gender_id",
}
#: A day number before every day with data ("never" in the walks).
NEVER: Final = np.iinfo(np.int32).min
_UPPERS: Final = np.array([upper for upper, _ in AGE_BUCKET_UPPER], np.int64)


@dataclass(frozen=True, slots=True)
class ProfileUsers:
    """The app's users with a profile: uids and their latest profile's values."""

    uid: IntArray  # intp, ascending
    values: dict[Dim, IntArray]  # FILLED dims: value id, 0 = none
    birth: IntArray  # yyyymmdd, -1 = none

    @property
    def nbytes(self) -> int:
        return int(
            self.uid.nbytes + self.birth.nbytes + sum(v.nbytes for v in self.values.values())
        )

    def age_ids(self, end: dt.date) -> IntArray:
        """The ``ages`` id of each user's birth date on ``end`` (0: none, or born after)."""
        e = end.year * 10000 + end.month * 100 + end.day
        age = end.year - self.birth // 10000 - (end.month * 100 + end.day < self.birth % 10000)
        ids: IntArray = np.searchsorted(_UPPERS, age, side="left") + 1
        ids[(self.birth < 0) | (self.birth > e)] = 0
        return ids


def load_profile_users(
    lake: Lake, app_dir: Path, users: list[str], profile_files: Iterable[str]
) -> ProfileUsers:
    """The latest profile of every user in the dictionary ``users`` (parts under
    ``app_dir``) from the committed ``profile_files`` (paths relative to the data dir)."""
    files = [str(lake.root / p) for p in profile_files]
    if not files or not users:
        empty = np.zeros(0, np.intp)
        return ProfileUsers(empty, dict.fromkeys(FILLED, empty), empty)
    listing = "read_parquet([" + ", ".join(sql_str(p) for p in files) + "])"
    parts = ", ".join(sql_str(str(app_dir / f)) for f in users)
    cols = ", ".join(f"CAST(coalesce(p.{c}, 0) AS INTEGER) AS {d}" for d, c in FILLED.items())
    birth = (
        "CAST(coalesce(year(p.birth_date) * 10000 + month(p.birth_date) * 100"
        " + day(p.birth_date), -1) AS INTEGER) AS birth"
    )
    con = lake.connect()
    try:
        got = con.execute(
            f"SELECT CAST(u.uid AS BIGINT) AS uid, {cols}, {birth} "
            f"FROM ({latest_profiles_sql(listing)}) p "
            f"JOIN read_parquet([{parts}], hive_partitioning=false) u USING (openid) "
            "ORDER BY uid"
        ).fetchnumpy()
    finally:
        con.close()
    return ProfileUsers(
        uid=np.asarray(got["uid"], np.intp),
        values={d: np.asarray(got[d], np.int64) for d in FILLED},
        birth=np.asarray(got["birth"], np.int64),
    )


@dataclass(frozen=True, slots=True)
class ProfileDays:
    """Per profiled user (``ProfileUsers`` order): the last day active and, per dimension,
    the last day an event carried it, among the days ``lo..hi`` (``NEVER``: none)."""

    lo: int
    hi: int
    last: IntArray
    valued: dict[Dim, IntArray]
    #: The lookups ``fill`` builds from this walk (per dimension; ages per end day).
    tables: dict[tuple[Dim, int | None], _Fill] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        tables = sum(c.nbytes for t in self.tables.values() for c in t.cum)
        return int(self.last.nbytes + sum(v.nbytes for v in self.valued.values()) + tables)

    @classmethod
    def walk(
        cls,
        users: ProfileUsers,
        n_users: int,
        days: Iterable[int],
        load: Callable[[int], DayPart],
        lo: int,
        hi: int,
    ) -> ProfileDays:
        """One pass over the day partitions of ``days`` inside ``lo..hi``, oldest first."""
        pos = _positions(users, n_users)
        last = np.full(len(users.uid), NEVER, np.int32)
        valued: dict[Dim, IntArray] = {
            d: np.full(len(users.uid), NEVER, np.int32) for d in (*FILLED, "ages")
        }
        out = cls(lo, hi, last, valued)
        for t in sorted(t for t in days if lo <= t <= hi):
            out._apply(pos, t, load(t))
        return out

    def grown(self, users: ProfileUsers, n_users: int, part: DayPart) -> ProfileDays:
        """This walk after more events of its newest day ``part.day`` (a live flush): for
        ``users``, which are this walk's users followed by users new to the app since
        (so seen on that day at most), with the day applied again. A day's values only
        grow as events are merged in, so applying it again over itself is exact."""
        extra = len(users.uid) - len(self.last)
        if extra < 0:
            raise ValueError("the users of a grown walk must extend the walk's")
        pad = np.full(extra, NEVER, np.int32)
        out = ProfileDays(
            self.lo,
            self.hi,
            np.concatenate([self.last, pad]),
            {d: np.concatenate([v, pad]) for d, v in self.valued.items()},
        )
        out._apply(_positions(users, n_users), part.day, part)
        return out

    def _apply(self, pos: IntArray, t: int, part: DayPart) -> None:
        at = pos[part.uid.astype(np.intp)]
        mine = at >= 0
        if not mine.any():
            return
        self.last[at[mine]] = t
        for d, target in self.valued.items():
            target[at[mine & (part.values[d] != 0)]] = t

    def fill(
        self, counts: WindowCounts, users: ProfileUsers, first: IntArray, begin: int, end: dt.date
    ) -> None:
        """Correct ``counts`` of the window ``begin..`` (days ``begin..hi`` must lie in
        ``lo..hi``; ``end``: the window's last day, for ages): a profiled user active in the
        window with no event value for a dimension moves from 未知 to its profile value.

        A lookup: per dimension, cumulative counts of the profiled users by profile value
        and by how many days before ``hi`` they were last active, last had an event value,
        were first seen (``_Fill``; built once per walk, and per end day for ages)."""
        if begin < self.lo:
            raise ValueError(f"window from day {begin} outside the walk from {self.lo}")
        k = self.hi - begin
        for d in (*FILLED, "ages"):
            key = (d, end.toordinal() if d == "ages" else None)
            table = self.tables.get(key)
            if table is None:
                p = users.values[d] if d != "ages" else users.age_ids(end)
                table = self.tables[key] = _Fill.build(self, d, p, first[users.uid])
            top = int(table.ids[-1]) + 1 if len(table.ids) else 0
            for audience, moved in zip((counts.active, counts.new), table.at(k), strict=True):
                if top > len(audience[d]):  # a value no event of the app had
                    grown = np.zeros(top, audience[d].dtype)
                    grown[: len(audience[d])] = audience[d]
                    audience[d] = grown
                audience[d][table.ids] += moved.astype(audience[d].dtype)
                audience[d][0] -= int(moved.sum())


@dataclass(frozen=True, slots=True)
class _Fill:
    """One dimension's profile fill as of a walk's last day ``hi``, by age ``a`` (days
    before ``hi``) and profile value: users moved from 未知 for a window of the days
    ``hi - k .. hi`` are, among those with a profile value,

    * active ones: last active at ``a <= k`` minus those with an event value at ``a <= k``
      (an event value implies activity that day or later);
    * new ones: first seen at ``0 <= a <= k`` (hence active) minus those also with an
      event value at ``a <= k``.
    """

    ids: IntArray  # the profile values present (ascending, no 0): the rows below
    cum: tuple[IntArray, IntArray, IntArray, IntArray]  # (row, age), cumulative over age

    @classmethod
    def build(cls, days: ProfileDays, d: Dim, p: IntArray, first: IntArray) -> _Fill:
        span = days.hi - days.lo + 2  # ages 0..hi-lo; the last column: never / outside

        def age(day: IntArray) -> IntArray:
            a = days.hi - day.astype(np.int64)
            return np.where((day == NEVER) | (a > span - 2), span - 1, a)

        has = p != 0
        ids, row = np.unique(p[has], return_inverse=True)
        rows = np.zeros(len(p), np.int64)
        rows[has] = row
        a_last, a_val = age(days.last), age(days.valued[d])
        a_first = days.hi - first.astype(np.int64)
        seen = has & (a_first >= 0)  # first seen by hi (later users: not in the window)
        a_first = np.clip(a_first, 0, span - 1)
        grids = []
        for mask, a in (
            (has, a_last),
            (has, a_val),
            (seen, a_first),
            (seen, np.maximum(a_first, a_val)),
        ):
            flat = np.bincount(rows[mask] * span + a[mask], minlength=len(ids) * span)
            grids.append(np.cumsum(flat.reshape(len(ids), span), axis=1, dtype=np.int32))
        return cls(ids, (grids[0], grids[1], grids[2], grids[3]))

    def at(self, k: int) -> tuple[IntArray, IntArray]:
        """(active, new) users moved to each of ``ids`` for the window of ages ``0..k``."""
        last, val, first, first_val = self.cum
        return last[:, k] - val[:, k], first[:, k] - first_val[:, k]


def _positions(users: ProfileUsers, n_users: int) -> IntArray:
    """uid -> the user's row in ``users`` (-1: no profile)."""
    pos = np.full(n_users, -1, np.intp)
    pos[users.uid] = np.arange(len(users.uid))
    return pos


def merged(old: ProfileUsers, new: ProfileUsers) -> ProfileUsers:
    """``old`` followed by ``new``, users of dictionary parts added since (larger uids)."""
    return ProfileUsers(
        uid=np.concatenate([old.uid, new.uid]),
        values={d: np.concatenate([old.values[d], new.values[d]]) for d in FILLED},
        birth=np.concatenate([old.birth, new.birth]),
    )


__all__ = ["FILLED", "NEVER", "ProfileDays", "ProfileUsers", "load_profile_users", "merged"]
