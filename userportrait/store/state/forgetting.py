"""A forget in the derived state: the app's files patched, not rebuilt (``store/forget.py``).

A forget removes some users' events from the lake. Nobody else's events change, so
nobody else's day winners, first day or head row changes either: the state without them
is the state with their rows taken out. ``forget_in_state`` does that, per file:

* the user dictionary parts that hold their openids are written anew without them (their
  uids become tombstones: never reused, in no file, first day ``NO_DAY``);
* the day partitions (and the newest day's winners' times and overlay) that hold their
  uids are written without those rows; a day left without users goes, with its files;
* the heads get their rows back to "never seen", the ``first_day`` file ``NO_DAY``;
* every end day's span histograms lose their contribution: the forgotten users' latest
  days and values alone are replayed over the days, from their own rows of the day
  partitions (``Latest``), and as of each end day their cells are counted down in the
  saved file (the histograms count every user seen, each once, as the head has them:
  ``spans.remove_users``; a cell that is not there fails the patch, and the app is
  rebuilt instead).

Exact for every window a reader answers: the replay sees the days the state has; days an
expiry dropped (``store/expire.py``) only ever reach buckets of windows before the cut,
which are refused. Nothing is read from the lake but the dictionary parts, and the cost
is the state's files (read and written once), not a rebuild's DuckDB passes.

The new files carry the forget's version and the manifest naming them is written last;
the previous state's files of the app are deleted once it is (they hold the openids). A
forget killed before leaves the old manifest, behind the catalog: the catch-up then
rebuilds the app from the lake (``catching_up.py``), as it does for any forget it did not
see patched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any

import numpy as np

from userportrait.portrait.dims import DIMS
from userportrait.sqlrows import register_rows
from userportrait.sqltext import sql_str
from userportrait.store.durable import atomic_write
from userportrait.store.lake import Lake
from userportrait.store.state.catching_up import drop_unlisted
from userportrait.store.state.days import (
    VALUE_DTYPES,
    day_number,
    find,
    load_day,
    overlaid,
    save_day,
)
from userportrait.store.state.head import LONG_AGO, Head
from userportrait.store.state.manifest import AppState, Manifest, app_dir, publish
from userportrait.store.state.npys import load_arrays, save_arrays
from userportrait.store.state.overlay import FoldNames, Overlay, first_days
from userportrait.store.state.spans import remove_users
from userportrait.store.windows import NO_DAY, DayPart, IntArray

log = logging.getLogger("userportrait.state")
#: Threads writing the patched files.
WRITERS = 4


def forget_in_state(
    lake: Lake, appid: str, openids: Iterable[str], before: int, version: int
) -> bool:
    """Patch ``appid``'s state for the forget committed as batch ``version`` (the catalog
    was at ``before`` until then); the caller holds the write lock. False when the state
    is not the one of ``before`` (behind, or the app's update failed): the catch-up
    rebuilds the app then."""
    root = lake.state_dir
    manifest = Manifest.read(root)
    if manifest.version != before or appid in manifest.failed:
        return False
    new = Manifest(version, dict(manifest.apps), dict(manifest.failed))
    old = manifest.apps.get(appid)
    if old is not None:
        try:
            patched = Patch(lake, appid, old, version).apply(sorted(set(openids)))
        except Exception:  # files no manifest names: the next publish removes them
            log.exception("the state of %s could not be patched for a forget; rebuilt", appid)
            return False
        if patched is None:
            del new.apps[appid]
        else:
            new.apps[appid] = patched
    publish(root, manifest, new)
    if old is not None:  # the old files hold the forgotten users: not kept for readers
        drop_unlisted(app_dir(root, appid), new.apps.get(appid))
    return True


class Patch:
    """One app's state at ``version`` without some users (see the module docstring)."""

    def __init__(self, lake: Lake, appid: str, old: AppState, version: int) -> None:
        self.lake = lake
        self.old = old
        self.app = old.copy()
        self.app.version = version
        self.dir = app_dir(lake.state_dir, appid)
        self.tag = f"b{version}"
        self.write: Callable[[Callable[[], None]], None] = _now

    def apply(self, openids: list[str]) -> AppState | None:
        """The patched app state (its files written), or None when no day is left."""
        uid = self._dictionary(openids)
        if not len(uid):
            return self.app
        jobs: list[Future[None]] = []
        # Files are written by a few threads beside the numpy work: each waits on its
        # fsync more than on a core. All are written before the manifest names them.
        with ThreadPoolExecutor(WRITERS, thread_name_prefix="forget-state") as pool:
            self.write = lambda save: jobs.append(pool.submit(save))
            try:
                return self._apply(uid)
            finally:
                for job in jobs:
                    job.result()

    def _apply(self, uid: IntArray) -> AppState | None:
        old = self.old
        assert old.first_day is not None
        overlay_day = next(iter(old.overlay), None)
        first = first_days(
            np.load(self.dir / old.first_day),
            old.n_users,
            None if overlay_day is None else day_number(overlay_day),
        ).copy()
        theirs = first[uid].copy()
        first[uid] = NO_DAY
        overlay = self._overlay(uid)
        latest = Latest(len(uid))  # theirs alone, replayed over the days
        for day in sorted(old.days):
            latest.apply(self._day(day, uid, overlay))
            if day in old.spans and day in self.app.days:
                t = day_number(day)
                self.app.spans[day] = self.names(day).spans
                src, dst = self.dir / old.spans[day], self.dir / self.app.spans[day]
                seen = np.flatnonzero(theirs <= t)
                self.write(partial(remove_users, src, dst, latest.head(t), theirs, seen))
        if not self.app.days:
            return None
        self._heads(uid)
        self.app.first_day = f"first_day.{self.tag}.npy"
        path = self.dir / self.app.first_day
        self.write(lambda: atomic_write(path, lambda fh: np.save(fh, first)))
        return self.app

    def names(self, day: str) -> FoldNames:
        return FoldNames(day, self.tag)

    def _dictionary(self, openids: list[str]) -> IntArray:
        """The users' uids (sorted); the dictionary parts holding them written anew
        without them."""
        if not self.app.users or not openids:
            return np.empty(0, np.intp)
        parts = [str(self.dir / p) for p in self.app.users]
        con = self.lake.connect()
        try:
            register_rows(con, "forgotten", ["openid"], [(o,) for o in openids], ["VARCHAR"])
            listing = "[" + ", ".join(sql_str(p) for p in parts) + "]"
            hits = con.execute(
                f"SELECT uid, filename FROM read_parquet({listing}, filename=true, "
                "hive_partitioning=false) WHERE openid IN (SELECT openid FROM forgotten)"
            ).fetchall()
            holding = {str(f) for _, f in hits}
            for i, (rel, path) in enumerate(zip(self.app.users, parts, strict=True)):
                if path not in holding:
                    continue
                name = f"users/u{self.tag[1:]}_f{i}.parquet"
                con.execute(
                    f"COPY (SELECT openid, uid FROM read_parquet({sql_str(path)}, "
                    "hive_partitioning=false) WHERE openid NOT IN (SELECT openid FROM forgotten))"
                    f" TO {sql_str(str(self.dir / name))} (FORMAT parquet, COMPRESSION zstd)"
                )
                self.app.users[self.app.users.index(rel)] = name
        finally:
            con.close()
        return np.unique(np.asarray([int(u) for u, _ in hits], np.intp))

    def _overlay(self, uid: IntArray) -> Overlay | None:
        """The newest day's overlay (as it was: its rows of the users are read from it),
        written anew without them (or dropped when no row is left)."""
        if not self.old.overlay:
            return None
        ((day, name),) = self.old.overlay.items()
        overlay = Overlay.load(self.dir / name, day_number(day))
        _, inside = find(overlay.part.uid, uid.astype(overlay.part.uid.dtype))
        if inside.any():
            _, drop = find(uid.astype(overlay.part.uid.dtype), overlay.part.uid)
            rest = overlay.take(np.flatnonzero(~drop))
            if len(rest):
                self.app.overlay = {day: self.names(day).overlay}
                self.write(partial(rest.save, self.dir / self.app.overlay[day]))
            else:
                self.app.overlay = {}
        return overlay

    def _day(self, day: str, uid: IntArray, overlay: Overlay | None) -> DayPart:
        """The users' rows of ``day`` as readers see it (``uid`` order: local indexes into
        ``uid``); its files written anew without them, or dropped if no user is left."""
        t = day_number(day)
        part = load_day(self.dir / self.old.days[day], t, mapped=True)
        at, present = find(part.uid, uid.astype(part.uid.dtype))
        mine = _local(part, at, present)
        on_top = overlay is not None and overlay.part.day == t
        if on_top:
            assert overlay is not None
            o_at, o_present = find(overlay.part.uid, uid.astype(overlay.part.uid.dtype))
            mine = overlaid(mine, _local(overlay.part, o_at, o_present))
        if not present.any():
            return mine
        keep = np.ones(len(part.uid), bool)
        keep[at[present]] = False
        if not keep.any() and not (on_top and self.app.overlay):  # nobody left that day
            for kind in ("days", "spans", "heads", "keys", "overlay"):
                getattr(self.app, kind).pop(day, None)
            return mine
        names = self.names(day)
        rest = DayPart(t, part.uid[keep], {d: part.values[d][keep] for d in DIMS})
        self.app.days[day] = names.days
        self.write(partial(save_day, self.dir / names.days, rest))
        if day in self.old.keys:  # the newest day's winners' times, row for row
            keys = load_arrays(self.dir / self.old.keys[day], mapped=True)
            self.app.keys = {day: names.keys}
            kept: dict[str, Any] = {d: keys[d][keep] for d in DIMS}
            self.write(partial(save_arrays, self.dir / names.keys, kept))
        return mine

    def _heads(self, uid: IntArray) -> None:
        """The kept heads with the users' rows back to "never seen" (a head none of them
        was seen in keeps its file)."""
        for day, name in sorted(self.app.heads.items()):
            path = self.dir / name
            rows = load_arrays(path, mapped=True)
            mine = uid[uid < len(rows["last"])]
            seen = (rows["last"][mine] < LONG_AGO).any()
            if not seen and not any(rows[f"v_{d}"][mine].any() for d in DIMS):
                continue
            head = Head.load(path, self.old.n_users)
            head.forget(uid)
            self.app.heads[day] = self.names(day).head
            self.write(partial(head.save, self.dir / self.app.heads[day]))


class Latest:
    """Per user, the last day active and per dimension the latest value and its day, in
    days (not ages: a day applied touches its users only); as a ``Head`` of any later day
    on demand (what ``Head.from_days`` does once)."""

    def __init__(self, n: int) -> None:
        self.last = np.full(n, -1, np.int64)
        self.val = {d: np.zeros(n, VALUE_DTYPES[d]) for d in DIMS}
        self.day = {d: np.full(n, -1, np.int64) for d in DIMS}

    def apply(self, part: DayPart) -> None:
        """The next day (days ascend)."""
        uid = part.uid.astype(np.intp)
        self.last[uid] = part.day
        for d in DIMS:
            has = part.values[d] != 0
            self.val[d][uid[has]] = part.values[d][has]
            self.day[d][uid[has]] = part.day

    def head(self, t: int) -> Head:
        """As of day ``t``: ages, ``LONG_AGO`` for that long ago or never."""
        head = Head(len(self.last))
        head.newest[0] = t
        for days, ages in ((self.last, head.last), *((self.day[d], head.age[d]) for d in DIMS)):
            age = np.minimum(t - days, LONG_AGO)
            age[days < 0] = LONG_AGO
            ages[:] = age
        for d in DIMS:
            head.val[d][:] = self.val[d]
        return head


def _now(save: Callable[[], None]) -> None:
    save()


def _local(part: DayPart, at: IntArray, present: IntArray) -> DayPart:
    """The rows ``at[present]`` of ``part`` as a day partition whose uids are the indexes
    of ``present`` (the forgotten users', local)."""
    rows = at[present]
    values = {d: np.asarray(part.values[d][rows]) for d in DIMS}
    return DayPart(part.day, np.flatnonzero(present).astype(np.uint32), values)


__all__ = ["Latest", "Patch", "forget_in_state"]
