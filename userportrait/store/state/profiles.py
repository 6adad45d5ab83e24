"""Profiles in the incremental store (issue 17): the users whose gaps a profile fills.

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
  ending there is then one vectorised pass over the profiled users (``fill``);
* a window longer than ``HORIZON`` days walks its own days (``ProfileDays.walk``).

The rule is the reference engine's (``engine/reference.py``); ``tests/test_engines_agree.py``
and ``tests/test_profile_semantics.py`` keep them equal.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
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

    @property
    def nbytes(self) -> int:
        return int(self.last.nbytes + sum(v.nbytes for v in self.valued.values()))

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
        window with no event value for a dimension moves from 未知 to its profile value."""
        if begin < self.lo:
            raise ValueError(f"window from day {begin} outside the walk from {self.lo}")
        active = self.last >= begin
        new = active & (first[users.uid] >= begin)
        for d in (*FILLED, "ages"):
            p = users.values[d] if d != "ages" else users.age_ids(end)
            filled = active & (self.valued[d] < begin) & (p != 0)
            for audience, mask in ((counts.active, filled), (counts.new, filled & new)):
                moved = np.bincount(p[mask], minlength=len(audience[d]))
                if len(moved) > len(audience[d]):  # a value no event of the app had
                    grown = np.zeros(len(moved), audience[d].dtype)
                    grown[: len(audience[d])] = audience[d]
                    audience[d] = grown
                audience[d] += moved.astype(audience[d].dtype)
                audience[d][0] -= int(mask.sum())


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
