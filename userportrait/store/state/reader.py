"""``StateStore``: answers portraits from the derived state, following the catalog.

Every window of 1 to ``spans.HORIZON`` days is a lookup in the span histograms of its end
day (or of the last day with data before it); a longer one is one pass over its day
partitions (``windows.one_window``). Files are cached by name (names carry the version
that wrote them, so a cached file is never stale).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
import pyarrow.parquet as pq

from userportrait.portrait.counts import Cell, CellKey, CrossCounts, PortraitCounts
from userportrait.portrait.dims import DIMS, Dim
from userportrait.portrait.query import PortraitQuery
from userportrait.store.lake import Lake
from userportrait.store.state.app_update import Progress, no_progress
from userportrait.store.state.catching_up import catch_up, remove_state
from userportrait.store.state.days import LazyDays, day_date, day_number, load_day, overlaid
from userportrait.store.state.head import Head
from userportrait.store.state.manifest import AppState, Manifest, app_dir
from userportrait.store.state.overlay import Overlay, first_days
from userportrait.store.state.profiles import (
    FILLED,
    ProfileDays,
    ProfileUsers,
    load_profile_users,
    merged,
)
from userportrait.store.state.shaping import to_portrait
from userportrait.store.state.spans import HORIZON, SpanTable, end_day_for
from userportrait.store.windows import (
    DayPart,
    IntArray,
    WindowCounts,
    WindowUsers,
    cross_counts,
    one_window,
    segment,
    segment_counts,
    window_users,
    window_values,
)

#: Bytes of day partitions a reader keeps in memory for windows beyond the horizon.
DAY_CACHE_BYTES = 384 << 20
#: Bytes of end days' span histograms a reader keeps in memory.
SPAN_CACHE_BYTES = 256 << 20
#: Bytes of heads as of past end days (filters and cross-tabs, ``_head_as_of``) a reader
#: keeps in memory: 25 bytes a user each.
HEAD_CACHE_BYTES = 256 << 20
#: A filtered window with at most this many days of data and no head cached for its end
#: walks those days (cheaper than building the head).
SHORT_WALK = 8
#: A segment of at most 1/SETTLE_SHARE of the users takes the values of dims the head
#: lacks from the window's days (``windows.window_values``); a larger one has the head's
#: columns of those dims built.
SETTLE_SHARE = 4
#: A head's missing dims are settled from the days for this many asks, then built.
SETTLES = 2
#: Heads (keys) whose settles are counted, the most recent ones.
SETTLED_KEYS = 16
#: End days whose profile walk (``state/profiles.py``) a reader keeps in memory.
PROFILE_WALKS = 8
T = TypeVar("T")


class _Sized(Protocol):
    @property
    def nbytes(self) -> int: ...


S = TypeVar("S", bound=_Sized)


class _BytesLRU(Generic[S]):
    """Least recently used values up to a total of ``limit`` bytes (always the newest)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: OrderedDict[tuple[str, str], S] = OrderedDict()
        self._sizes: dict[tuple[str, str], int] = {}
        self._bytes = 0

    def has(self, key: tuple[str, str]) -> bool:
        return key in self._items

    def get(self, key: tuple[str, str], load: Callable[[], S]) -> S:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
            return value
        value = self._items[key] = load()
        self._sizes[key] = 0
        self.refresh(key)
        return value

    def refresh(self, key: tuple[str, str]) -> None:
        """Count the value of ``key`` anew (it grew), dropping the oldest to make room."""
        size = self._items[key].nbytes
        self._bytes += size - self._sizes[key]
        self._sizes[key] = size
        while self._bytes > self.limit and len(self._items) > 1:
            old, _ = self._items.popitem(last=False)
            self._bytes -= self._sizes.pop(old)

    def clear(self) -> None:
        self._items.clear()
        self._sizes.clear()
        self._bytes = 0


class StaleState(Exception):
    """The appid's state is behind the catalog after a failed update (see ``failed``)."""

    def __init__(self, appid: str) -> None:
        super().__init__(f"the portrait state of {appid} failed to update")
        self.appid = appid


class StateStore:
    """Reads and maintains the derived state of one data directory."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self.root = lake.state_dir
        self.manifest = Manifest.read(self.root)
        self._lock = threading.RLock()
        self._days: _BytesLRU[DayPart] = _BytesLRU(DAY_CACHE_BYTES)
        self._spans: _BytesLRU[SpanTable] = _BytesLRU(SPAN_CACHE_BYTES)
        self._heads: _BytesLRU[Head] = _BytesLRU(HEAD_CACHE_BYTES)
        self._settled: OrderedDict[tuple[str, str], int] = OrderedDict()  # key -> settles
        self._positions: dict[str, tuple[ProfileUsers, IntArray]] = {}
        self._files: dict[tuple[str, str], tuple[str, Any]] = {}  # (appid, kind) -> (name, value)
        self._answered = threading.local()
        self._profile_files: dict[str, tuple[int, tuple[str, ...]]] = {}
        self._profile_users: dict[str, tuple[Any, ProfileUsers]] = {}
        self._profile_days: OrderedDict[tuple[str, int, int], Any] = OrderedDict()

    def app_dir(self, appid: str) -> Path:
        return app_dir(self.root, appid)

    # -- following the catalog ----------------------------------------------------------

    def catch_up_if_behind(self) -> None:
        """Follow the catalog: load a newer manifest, catching up first if it lags (or a
        failed app's retry is due)."""
        version = self.lake.catalog.version()
        with self._lock:
            due = self.manifest.due(time.time()) if self.manifest.failed else set()
            if self.manifest.version == version and not due:
                return
            manifest = Manifest.read(self.root)
            if manifest.version < version or manifest.due(time.time()):
                with self.lake.try_write_lock() as locked:
                    if locked:
                        manifest = catch_up(self.lake)
            # Otherwise a writer holds the lock and publishes the new version when done.
            self.manifest = manifest

    def catch_up(self, progress: Progress = no_progress) -> int:
        """Apply every committed batch the state has not seen (caller holds the write
        lock); returns the new version."""
        with self._lock:
            self.manifest = catch_up(self.lake, progress)
            return self.manifest.version

    def rebuild(self, progress: Progress = no_progress) -> int:
        """Throw the state away and build it again from the lake."""
        with self._lock:
            remove_state(self.lake)
            self.manifest = Manifest()
            self._files.clear()
            self._days.clear()
            self._spans.clear()
            return self.catch_up(progress)

    # -- answering ----------------------------------------------------------------------

    def portrait_after_catch_up(self, query: PortraitQuery) -> PortraitCounts:
        """The portrait from the state, after catching up with the catalog if it lags
        (a filtered one from the users of the window, ``_segment``)."""
        if query.plain:
            return self._after_catch_up(query, self._portrait)
        return self._after_catch_up(query, self._segment_portrait)

    def crosstab_after_catch_up(self, query: PortraitQuery) -> CrossCounts:
        """The cross-tab ``query.by`` from the state, after catching up."""
        return self._after_catch_up(query, self._crosstab)

    def _after_catch_up(self, query: PortraitQuery, answer: Callable[[PortraitQuery], T]) -> T:
        for attempt in range(3):
            self.catch_up_if_behind()
            try:
                with self._lock:
                    if query.appid in self.manifest.failed:
                        raise StaleState(query.appid)
                    self._answered.version = self.manifest.version
                    return answer(query)
            except FileNotFoundError:  # a writer replaced files of an old manifest
                with self._lock:
                    self.manifest = Manifest.read(self.root)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def answered_version(self) -> int:
        """The catalog version the calling thread's last answer reflected.

        It may lag the catalog while another writer holds the lock
        (see ``catch_up_if_behind``).
        """
        return int(getattr(self._answered, "version", self.manifest.version))

    def _portrait(self, query: PortraitQuery) -> PortraitCounts:
        app = self.manifest.apps.get(query.appid)
        if app is None or not app.days:
            return PortraitCounts.empty()
        n, end = query.days, day_number(query.end)
        devices = self._device_list(query.appid, app)
        if n <= HORIZON and app.spans:
            last = end_day_for(sorted(app.spans), query.end.isoformat())
            if last is None or n - (end - day_number(last)) <= 0:  # no data in the window
                return PortraitCounts.empty()
            span = n - (end - day_number(last))
            table = self._span_table(query.appid, app.spans[last])
            counts = table.counts(span, app.value_sizes())
            self._fill_profiles(query, app, counts, day_number(last))
            return to_portrait(counts, devices)
        return self.compute(query.appid, app, n, end, devices, query)

    def _span_table(self, appid: str, name: str) -> SpanTable:
        return self._spans.get((appid, name), lambda: SpanTable(self.app_dir(appid) / name))

    def compute(
        self,
        appid: str,
        app: AppState,
        n: int,
        end: int,
        devices: list[str],
        query: PortraitQuery | None = None,
    ) -> PortraitCounts:
        """One window from the day partitions (the ad-hoc path; no window table)."""
        begin = end - n + 1
        present = {day_number(d) for d in app.days}
        if not any(begin <= t <= end for t in present):
            return PortraitCounts.empty()
        days = LazyDays(lambda t: self._day(appid, app, t), present)
        counts = one_window(days, self._first_days(appid, app), app.value_sizes(), n, end)
        if query is not None:
            self._fill_profiles(query, app, counts, None)
        return to_portrait(counts, devices)

    # -- filters and cross-tabs (docs/semantics.md, "Filters and cross-tabs") --------------

    def _segment_portrait(self, query: PortraitQuery) -> PortraitCounts:
        got = self._segment(query, DIMS)
        if got is None:
            return PortraitCounts.empty()
        users, app, devices = got
        return to_portrait(segment_counts(users, app.value_sizes()), devices)

    def _crosstab(self, query: PortraitQuery) -> CrossCounts:
        assert query.by is not None
        got = self._segment(query, query.by)
        if got is None:
            return CrossCounts()
        users, _, devices = got
        new, active = cross_counts(users, query.by)
        a, b = query.by

        def key(dim: Dim, v: int) -> CellKey:
            if dim != "devices":
                return v
            return devices[v - 1] if v else None

        def named(cells: dict[tuple[int, int], int]) -> dict[Cell, int]:
            return {(key(a, x), key(b, y)): n for (x, y), n in cells.items()}

        return CrossCounts(new=named(new), active=named(active))

    def _segment(
        self, query: PortraitQuery, dims: Sequence[Dim]
    ) -> tuple[WindowUsers, AppState, list[str]] | None:
        """The users of the window in ``query.filters``' segment with their values of
        ``dims``, filled from profiles as the counts are (None: nobody in the window).

        A window of up to ``HORIZON`` days is read off the head as of its last day with
        data (``_head_as_of``, cached): a user is active when last seen less than the
        span ago and takes a value seen less than the span ago, as the span histograms
        count (``spans.py``). A longer one walks its days (``windows.window_users``)."""
        app = self.manifest.apps.get(query.appid)
        if app is None or not app.days:
            return None
        n, end = query.days, day_number(query.end)
        ids = self._filter_ids(query, app)
        fill = self._filler(query, app)
        first = self._first_days(query.appid, app)
        present = sorted(day_number(d) for d in app.days)
        last = next((t for t in reversed(present) if t <= end), None)
        if last is None or n - (end - last) <= 0:
            return None
        key = self._head_key(query.appid, app, last)
        window = [t for t in present if end - n < t <= end]
        if n > HORIZON:
            days = LazyDays(lambda t: self._day(query.appid, app, t), set(present))
            users = window_users(days, first, n, end)
            for d in (*FILLED, "ages"):
                users.values[d] = fill(d, users.uid, users.values[d])
            return segment(users, ids), app, self._device_list(query.appid, app)
        # The columns every user is tested or counted on: the filters', else ``dims``.
        full = [d for d, _ in ids] or list(dims)
        span = n - (end - last)
        if len(window) <= SHORT_WALK and not self._heads.has(key):
            # A head costs a pass over HORIZON days: a window of a few days with no head
            # cached for its end builds one of its own days only, for this ask.
            head = Head.from_days(
                (self._day(query.appid, app, t) for t in window), app.n_users, full
            )

            def settle(uid: IntArray, missing: Sequence[Dim]) -> dict[Dim, IntArray]:
                days = (self._day(query.appid, app, t) for t in window)
                return window_values(days, uid, app.n_users, missing)

        else:
            head = self._heads.get(
                key, lambda: self._head_as_of(query.appid, app, last, present, full)
            )
            head.grow(app.n_users)  # users added since (a live flush): never seen by then
            self._with_dims(query.appid, app, key, head, present, full)

            def settle(uid: IntArray, missing: Sequence[Dim]) -> dict[Dim, IntArray]:
                """The segment's values of dims the head lacks: for a small segment, the
                first ``SETTLES`` times, from the window's days (a third of the columns'
                cost or less); else the columns, kept with the head for the asks that
                follow (paid once the settling has cost about as much)."""
                settled = self._settled.pop(key, 0)
                if len(uid) * SETTLE_SHARE > len(head.last) or settled >= SETTLES:
                    self._with_dims(query.appid, app, key, head, present, missing)
                    return {}
                self._settled[key] = settled + 1
                while len(self._settled) > SETTLED_KEYS:
                    self._settled.popitem(last=False)
                days = (self._day(query.appid, app, t) for t in window)
                return window_values(days, uid, len(head.last), missing)

        users = head_users(head, first, span, end - n + 1, ids, dims, fill, settle)
        return users, app, self._device_list(query.appid, app)

    def _head_key(self, appid: str, app: AppState, last: int) -> tuple[str, str]:
        """The cache key of the head as of ``last``: the files of the days it is built
        from (names carry the version that wrote them), so a batch of other days, such as
        a live flush of the newest day, leaves the heads of earlier days cached."""
        names = [
            f"{d}:{name}:{app.overlay.get(d, '')}"
            for d, name in app.days.items()
            if last - HORIZON < day_number(d) <= last
        ]
        digest = hashlib.sha256("|".join(sorted(names)).encode()).hexdigest()[:32]
        return appid, f"{last}:{digest}"

    def _head_as_of(
        self, appid: str, app: AppState, last: int, present: list[int], dims: Sequence[Dim]
    ) -> Head:
        """Every user's head as of the day ``last`` (the caller caches it): the state's
        own head of that day (one of the last few with data), or the cached head of an
        earlier day moved on over the days between when there are few of them, else one
        pass over the ``HORIZON`` days up to ``last`` for ``dims`` only."""
        day = day_date(last).isoformat()
        kept = app.heads.get(day)
        if kept is not None and day not in app.overlay:  # (an overlay holds rows of its own)
            return Head.load(self.app_dir(appid) / kept, app.n_users)
        before = [t for t in present if t < last][-SHORT_WALK:]
        for start in reversed(before):
            key = self._head_key(appid, app, start)
            if self._heads.has(key):
                head = self._heads.get(key, _unreachable).copy()
                head.grow(app.n_users)
                for t in (t for t in present if start < t <= last):
                    head.fold(self._day(appid, app, t))  # a day on: every age grows
                return head
        inside = [t for t in present if last - HORIZON < t <= last]
        return Head.from_days((self._day(appid, app, t) for t in inside), app.n_users, dims)

    def _with_dims(
        self,
        appid: str,
        app: AppState,
        key: tuple[str, str],
        head: Head,
        present: list[int],
        dims: Sequence[Dim],
    ) -> None:
        """Add to the cached ``head`` the columns of ``dims`` it lacks."""
        missing = [d for d in dims if d not in head.dims]
        if missing:
            last = int(head.newest[0])
            inside = [t for t in present if last - HORIZON < t <= last]
            days = (self._day(appid, app, t) for t in inside)
            head.include(Head.from_days(days, len(head.last), missing))
            self._heads.refresh(key)

    def _filter_ids(self, query: PortraitQuery, app: AppState) -> list[tuple[Dim, int]]:
        """The filters as value ids (a device model no event of the app names: -1)."""
        ids: list[tuple[Dim, int]] = []
        for dim, value in query.filters:
            if dim != "devices":
                ids.append((dim, int(value or 0)))
            elif value is None:
                ids.append((dim, 0))
            else:
                ids.append((dim, self._device_ids(query.appid, app).get(str(value), -1)))
        return ids

    def _filler(self, query: PortraitQuery, app: AppState) -> Fill:
        """(dim, uids, their window values) -> the values with each gap (no event value in
        the window) taken from the user's profile, as ``_fill_profiles`` does for counts
        (docs/semantics.md)."""
        paths = self._profile_paths(query.appid)
        if not paths or not app.users:
            return _no_fill
        profiled = self._profiled(query.appid, app, paths)
        if not len(profiled.uid):
            return _no_fill
        hit = self._positions.get(query.appid)
        if hit is None or hit[0] is not profiled or len(hit[1]) != app.n_users:
            where: IntArray = np.full(app.n_users, -1, np.int32)
            where[profiled.uid] = np.arange(len(profiled.uid), dtype=np.int32)
            hit = self._positions[query.appid] = (profiled, where)
        pos = hit[1]
        ages: list[IntArray] = []
        rows: list[tuple[IntArray, IntArray, Any]] = []  # (uid, profile rows, has one)

        def fill(d: Dim, uid: IntArray, values: IntArray) -> IntArray:
            if d not in FILLED and d != "ages":
                return values
            if d == "ages" and not ages:
                ages.append(profiled.age_ids(query.end))
            source = ages[0] if d == "ages" else profiled.values[d]
            if not rows or rows[0][0] is not uid:  # once per set of users, not per dim
                row = pos[uid]
                rows[:] = [(uid, row, row >= 0)]
            _, row, has = rows[0]
            gap = has & (values == 0)
            values[gap] = source[row[gap]]
            return values

        return fill

    def _device_ids(self, appid: str, app: AppState) -> dict[str, int]:
        devices = self._device_list(appid, app)
        return self._cached(
            appid,
            "device_ids",
            app.devices or "",
            lambda _: {d: i + 1 for i, d in enumerate(devices)},
        )

    # -- profiles (docs/semantics.md, "Profiles fill gaps") -------------------------------

    def _fill_profiles(
        self, query: PortraitQuery, app: AppState, counts: WindowCounts, last: int | None
    ) -> None:
        """Move the profiled users' gaps from 未知 to their profile values (docs/semantics.md);
        ``last``: the end day of the span histograms used, None for a walk of the window."""
        appid = query.appid
        paths = self._profile_paths(appid)
        if not paths or not app.users:
            return
        users = self._profiled(appid, app, paths)
        if not len(users.uid):
            return
        first = self._first_days(appid, app)
        begin = day_number(query.begin)
        if last is None:  # a window beyond the histograms: walked for this query only
            walked = ProfileDays.walk(
                users, app.n_users, [day_number(d) for d in app.days],
                lambda t: self._day(appid, app, t), begin, day_number(query.end),
            )  # fmt: skip
        else:
            walked = self._walk(appid, app, paths, users, last - HORIZON + 1, last)
        walked.fill(counts, users, first, begin, query.end)

    def _profiled(self, appid: str, app: AppState, paths: tuple[str, ...]) -> ProfileUsers:
        """The app's users with a profile; after a batch that only added users (new
        dictionary parts), their profiles are looked up and appended."""
        parts = tuple(app.users)
        hit = self._profile_users.get(appid)
        if hit is not None and hit[0] == (paths, parts):
            return hit[1]
        if hit is not None and hit[0][0] == paths and parts[: len(hit[0][1])] == hit[0][1]:
            extra = parts[len(hit[0][1]) :]
            users = merged(
                hit[1], load_profile_users(self.lake, self.app_dir(appid), list(extra), paths)
            )
        else:
            users = load_profile_users(self.lake, self.app_dir(appid), list(parts), paths)
        self._profile_users[appid] = ((paths, parts), users)
        return users

    def _walk(
        self,
        appid: str,
        app: AppState,
        paths: tuple[str, ...],
        users: ProfileUsers,
        lo: int,
        hi: int,
    ) -> ProfileDays:
        """The walk of the days ``lo..hi`` for the span histograms ending on ``hi``
        (cached); after a batch of its newest day only (a live flush), that day is
        applied again over the cached walk instead of walking every day."""
        inside = sorted((day_number(d), name) for d, name in app.days.items())
        inside = [(t, name) for t, name in inside if lo <= t <= hi]
        # A live flush may add to the newest day without renaming its file (an overlay,
        # ``overlay.py``): the walk must follow that too.
        overlay = tuple(sorted(app.overlay.items()))
        older, newest = tuple(inside[:-1]), (inside[-1] if inside else None, overlay)
        parts = tuple(app.users)
        key = (appid, lo, hi)
        hit = self._profile_days.get(key)
        walked: ProfileDays | None = None
        if hit is not None and hit[0] == paths and hit[1] == older:
            same_users, grew = hit[2] == parts, parts[: len(hit[2])] == hit[2]
            if same_users and hit[3] == newest:
                walked = hit[4]
            elif grew and inside:
                t = inside[-1][0]
                walked = hit[4].grown(users, app.n_users, self._day(appid, app, t))
        if walked is None:
            walked = ProfileDays.walk(
                users, app.n_users, [t for t, _ in inside],
                lambda t: self._day(appid, app, t), lo, hi,
            )  # fmt: skip
        self._profile_days[key] = (paths, older, parts, newest, walked)
        self._profile_days.move_to_end(key)
        while len(self._profile_days) > PROFILE_WALKS:
            self._profile_days.popitem(last=False)
        return walked

    def _first_days(self, appid: str, app: AppState) -> IntArray:
        """Every user's first day; users beyond the ``first_day`` file (added by live
        flushes of the newest day since it was written) first came on the newest day."""
        assert app.first_day is not None
        first: IntArray = self._cached(appid, "first_day", app.first_day, np.load)
        overlay = next(iter(app.overlay), None)
        return first_days(first, app.n_users, None if overlay is None else day_number(overlay))

    def _profile_paths(self, appid: str) -> tuple[str, ...]:
        """The app's profile files as of the manifest's catalog version (cached per version)."""
        version = self.manifest.version
        hit = self._profile_files.get(appid)
        if hit is None or hit[0] != version:
            files = self.lake.catalog.profile_files(appid, upto=version)
            hit = self._profile_files[appid] = (version, tuple(f.path for f in files))
        return hit[1]

    def _cached(self, appid: str, kind: str, name: str, load: Callable[[Path], T]) -> T:
        """The app's current ``kind`` file, loaded once per name."""
        hit = self._files.get((appid, kind))
        if hit is None or hit[0] != name:
            hit = (name, load(self.app_dir(appid) / name))
            self._files[(appid, kind)] = hit
        value: T = hit[1]
        return value

    def _device_list(self, appid: str, app: AppState) -> list[str]:
        if app.devices is None:
            return []
        return self._cached(appid, "devices", app.devices, _read_devices)

    def _day(self, appid: str, app: AppState, t: int) -> DayPart:
        day = day_date(t).isoformat()
        name, overlay = app.days[day], app.overlay.get(day)

        def load() -> DayPart:
            part = load_day(self.app_dir(appid) / name, t)
            if overlay is None:
                return part
            # The newest day's users flushed since its file was written.
            return overlaid(part, Overlay.load(self.app_dir(appid) / overlay, t).part)

        return self._days.get((appid, name if overlay is None else overlay), load)


def _unreachable() -> Head:
    raise AssertionError("a cached head was looked up")


#: (dim, uids, their window values) -> the values with profile gaps filled.
Fill = Callable[[Dim, IntArray, IntArray], IntArray]


#: (uids of the segment, dims the head lacks) -> their values in the window (before the
#: profiles' fill), or {} once the head holds those dims.
Settle = Callable[[IntArray, Sequence[Dim]], dict[Dim, IntArray]]


def _no_fill(_d: Dim, _uid: IntArray, values: IntArray) -> IntArray:
    return values


def head_users(
    head: Head,
    first: IntArray,
    span: int,
    begin: int,
    filters: Sequence[tuple[Dim, int]],
    dims: Sequence[Dim],
    fill: Fill,
    settle: Settle,
) -> WindowUsers:
    """The users of the window of ``span`` days ending on the head's day, in the segment
    of ``filters``, with their values of ``dims`` (and of the filtered dims).

    The filters are tested first on every user's row as it is held (compact dtypes, no
    gather), so only the segment's users are gathered and read; where profiles may fill
    a gap, a user with a gap is a candidate too and settled after the fill."""
    keep = head.last < span
    fills = fill is not _no_fill
    for d, wanted in filters:
        inside = head.age[d] < span
        if wanted:  # (``head.val[d] == wanted`` is False for an id beyond the dtype)
            hit = head.val[d] == wanted
            hit &= inside
            if fills:
                hit |= ~inside
                hit |= head.val[d] == 0
        else:
            hit = ~inside
            hit |= head.val[d] == 0
        keep &= hit
    uid = np.flatnonzero(keep)
    values: dict[Dim, IntArray] = {}

    def read(d: Dim) -> IntArray:
        v = head.val[d][uid]
        # Seen before the window: 未知 there (a product, not a masked store: 4x faster).
        v *= head.age[d][uid] < span
        return fill(d, uid, v)

    if fills:  # the candidates' values after the fill: the exact test
        for d, wanted in filters:
            v = read(d)
            kept = v == wanted
            uid = uid[kept]
            values = {k: a[kept] for k, a in values.items()}
            values[d] = v[kept]
    rest = [d for d in (*dims, *(d for d, _ in filters)) if d not in values]
    lacking = [d for d in rest if d not in head.dims]
    settled = settle(uid, lacking) if lacking else {}
    for d in rest:
        values[d] = fill(d, uid, settled[d]) if d in settled else read(d)
    return WindowUsers(uid=uid, new=first[uid] >= begin, values=values)


def _read_devices(path: Path) -> list[str]:
    # ParquetFile, not read_table (that imports pyarrow.dataset, and pandas when present);
    # Python lists, not sort_by or ChunkedArray.to_numpy (they import pyarrow.compute and
    # pandas: 0.3-0.9 s in a fresh CLI). The dictionary is small.
    table = pq.ParquetFile(path).read()
    by_id = dict(
        zip(table.column("id").to_pylist(), table.column("device").to_pylist(), strict=True)
    )
    if sorted(by_id) != list(range(1, len(by_id) + 1)):
        raise ValueError(f"{path}: device ids are not 1..{len(by_id)}")
    return [by_id[i] for i in range(1, len(by_id) + 1)]
