"""The incremental portrait store: derived state under ``DATA_DIR/state/`` (docs/storage.md).

It is a cache of the lake. ``manifest.json`` names the catalog version it reflects and the
files of that version; every file name carries the batch id that wrote it, and the
manifest is replaced last (atomic rename), so readers always see one consistent version
and a crash between a lake commit and the state update loses nothing: ``catch_up`` applies
every batch the manifest has not seen (and builds everything when there is no state).

Per appid:

* a user dictionary (``users/uN.parquet``: openid -> dense uid, append-only parts) and
  ``first_day`` per uid (``first_day.bN.npy``, days since 1970, min over all data);
* a device dictionary (``devices.bN.parquet``: model string -> id, from 1);
* one day partition per day with data (``days/YYYY-MM-DD.bN.npz``): the users active
  that day and, per dimension, the day's winning value id (0 = none that day);
* ``windows.bN.npz``: the counts of every 1/7/30-day window that overlaps the data.

DuckDB builds day partitions from the lake; numpy merges them (``store/windows.py``).

Apps are updated one by one: when one app's update fails, the others still move on and
the manifest records the failure (``failed``: the days still to apply, the error, the
attempts). Such an app is retried with back-off; until then ``portrait`` raises
``StaleState`` for it, and the engine answers from the lake instead (never a stale answer).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.lib import format as npformat

from userportrait.ingest.sources import sql_str
from userportrait.portrait.counts import AudienceCounts, PortraitCounts
from userportrait.portrait.dims import DIMS, ID_DIMS, Dim
from userportrait.portrait.query import PortraitQuery
from userportrait.store.lake import DIM_COLUMNS, Lake
from userportrait.store.windows import (
    NO_DAY,
    DayPart,
    IntArray,
    WindowCounts,
    compute_windows,
    few_windows,
    one_window,
)

log = logging.getLogger("userportrait.state")

FORMAT = 3  # 2: the head is a stream of .npy arrays; 3: it holds ages, not days
#: Window lengths whose counts are kept for every end day (WeChat's spans).
STANDARD_LENGTHS = (1, 7, 30)
#: Events per DuckDB pass when building day partitions (bounds memory).
CHUNK_EVENTS = 6_000_000
#: At most this many windows are recounted one by one (each holds ~12 bytes per user).
FEW_WINDOWS = 8
#: Bytes of day partitions a reader keeps in memory for ad-hoc windows.
DAY_CACHE_BYTES = 384 << 20
_ID_BITS = 14  # value ids < 16384 (city codes top out at 9999)
#: Seconds before the first retry of a failed app update; doubled per attempt up to the max.
RETRY_BACKOFF_S = 5.0
RETRY_BACKOFF_MAX_S = 900.0
_RANK_BITS = 26  # device ranks < 2^26; with 2^37 us per day the key stays < 2^63
EPOCH = dt.date(1970, 1, 1)
#: Reports what the state update is doing: (description, fraction done).
Progress = Callable[[str, float], None]


def _no_progress(_desc: str, _frac: float) -> None:
    pass


def day_number(day: dt.date | str) -> int:
    d = dt.date.fromisoformat(day) if isinstance(day, str) else day
    return (d - EPOCH).days


def day_date(n: int) -> dt.date:
    return EPOCH + dt.timedelta(days=n)


@dataclass(slots=True)
class AppState:
    """The manifest entry of one appid (file names relative to the app's directory)."""

    users: list[str] = field(default_factory=list)
    n_users: int = 0
    first_day: str | None = None
    devices: str | None = None
    days: dict[str, str] = field(default_factory=dict)  # yyyy-mm-dd -> file
    windows: str | None = None
    head: str | None = None
    sizes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DIMS, 1))

    def files(self) -> set[str]:
        named = [self.first_day, self.devices, self.windows, self.head]
        named += [*self.days.values(), *self.users]
        return {f for f in named if f}


class StaleState(Exception):
    """The appid's state is behind the catalog after a failed update (see ``failed``)."""

    def __init__(self, appid: str) -> None:
        super().__init__(f"the portrait state of {appid} failed to update")
        self.appid = appid


@dataclass(slots=True)
class Failure:
    """A failed state update of one appid: what is still to apply, and when to retry."""

    days: list[str]
    error: str
    attempts: int
    last_try: float  # epoch seconds

    def next_try(self) -> float:
        wait = RETRY_BACKOFF_S * 2.0 ** (self.attempts - 1)
        return self.last_try + min(wait, RETRY_BACKOFF_MAX_S)

    def public(self) -> dict[str, Any]:
        """What /healthz shows (no paths or data: the error's type and first line)."""
        return {
            "error": self.error,
            "attempts": self.attempts,
            "last_try": dt.datetime.fromtimestamp(self.last_try, dt.UTC).isoformat(),
            "next_try": dt.datetime.fromtimestamp(self.next_try(), dt.UTC).isoformat(),
            "days_pending": len(self.days),
        }


@dataclass(slots=True)
class Manifest:
    version: int = 0
    apps: dict[str, AppState] = field(default_factory=dict)
    failed: dict[str, Failure] = field(default_factory=dict)

    def to_json(self) -> str:
        apps = {
            a: {
                "users": s.users,
                "n_users": s.n_users,
                "first_day": s.first_day,
                "devices": s.devices,
                "days": s.days,
                "windows": s.windows,
                "head": s.head,
                "sizes": s.sizes,
            }
            for a, s in sorted(self.apps.items())
        }
        failed = {
            a: {"days": f.days, "error": f.error, "attempts": f.attempts, "last_try": f.last_try}
            for a, f in sorted(self.failed.items())
        }
        body = {"format": FORMAT, "version": self.version, "apps": apps, "failed": failed}
        return json.dumps(body, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        raw = json.loads(text)
        if raw.get("format") != FORMAT:
            return cls()  # an unknown layout: rebuild
        apps = {a: AppState(**s) for a, s in raw["apps"].items()}
        failed = {a: Failure(**f) for a, f in raw.get("failed", {}).items()}
        return cls(raw["version"], apps, failed)

    def due(self, now: float) -> set[str]:
        """Failed apps whose back-off has passed."""
        return {a for a, f in self.failed.items() if now >= f.next_try()}


def state_failures(lake: Lake) -> dict[str, dict[str, Any]]:
    """The apps whose state update failed and is waiting for a retry (for /healthz)."""
    try:
        text = (lake.state_dir / "manifest.json").read_text("utf-8")
    except FileNotFoundError:
        return {}
    return {a: f.public() for a, f in sorted(Manifest.from_json(text).failed.items())}


class StateStore:
    """Reads and maintains the derived state of one data directory."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self.root = lake.state_dir
        self.manifest = self._read_manifest()
        self._lock = threading.RLock()
        self._days: OrderedDict[tuple[str, str], DayPart] = OrderedDict()
        self._days_bytes = 0
        self._first: dict[str, tuple[str, IntArray]] = {}
        self._devices: dict[str, tuple[str, list[str]]] = {}
        self._windows: dict[str, tuple[str, _WindowTable]] = {}
        self._answered = threading.local()

    # -- reading ------------------------------------------------------------------------

    def app_dir(self, appid: str) -> Path:
        return self.root / f"appid={appid}"

    def _read_manifest(self) -> Manifest:
        try:
            return Manifest.from_json((self.root / "manifest.json").read_text("utf-8"))
        except FileNotFoundError:
            return Manifest()

    def refresh(self) -> None:
        """Follow the catalog: load a newer manifest, catching up first if it lags."""
        version = self.lake.catalog.version()
        with self._lock:
            due = self.manifest.due(time.time()) if self.manifest.failed else set()
            if self.manifest.version == version and not due:
                return
            manifest = self._read_manifest()
            lagging = manifest.version < version or manifest.due(time.time())
            if lagging and _try_write_lock(self.lake):
                try:
                    self.catch_up()
                finally:
                    _unlock(self.lake)
                manifest = self._read_manifest()
            # Otherwise a writer holds the lock and publishes the new version when done.
            self.manifest = manifest

    def portrait(self, query: PortraitQuery) -> PortraitCounts:
        for attempt in range(3):
            self.refresh()
            try:
                with self._lock:
                    if query.appid in self.manifest.failed:
                        raise StaleState(query.appid)
                    self._answered.version = self.manifest.version
                    return self._portrait(query)
            except FileNotFoundError:  # a writer replaced files of an old manifest
                with self._lock:
                    self.manifest = self._read_manifest()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def answered_version(self) -> int:
        """The catalog version the calling thread's last answer reflected.

        It may lag the catalog while another writer holds the lock (see ``refresh``).
        """
        return int(getattr(self._answered, "version", self.manifest.version))

    def _portrait(self, query: PortraitQuery) -> PortraitCounts:
        app = self.manifest.apps.get(query.appid)
        if app is None or not app.days:
            return PortraitCounts.empty()
        n, end = query.days, day_number(query.end)
        devices = self._device_list(query.appid, app)
        if n in STANDARD_LENGTHS and app.windows:
            table = self._window_table(query.appid, app)
            hit = table.get(n, end, devices)
            if hit is not None:
                return hit
        return self.compute(query.appid, app, n, end, devices)

    def compute(
        self, appid: str, app: AppState, n: int, end: int, devices: list[str]
    ) -> PortraitCounts:
        """One window from the day partitions (the ad-hoc path; no window table)."""
        begin = end - n + 1
        present = {day_number(d) for d in app.days}
        if not any(begin <= t <= end for t in present):
            return PortraitCounts.empty()
        days = _LazyDays(lambda t: self._day(appid, app, t), present)
        sizes = _sizes(app)
        counts = one_window(days, self._first_day(appid, app), sizes, n, end)
        return to_portrait(counts, devices)

    def _day(self, appid: str, app: AppState, t: int) -> DayPart:
        name = app.days[day_date(t).isoformat()]
        key = (appid, name)
        part = self._days.get(key)
        if part is not None:
            self._days.move_to_end(key)
            return part
        part = load_day(self.app_dir(appid) / name, t)
        self._days[key] = part
        self._days_bytes += part.nbytes
        while self._days_bytes > DAY_CACHE_BYTES and len(self._days) > 1:
            _, old = self._days.popitem(last=False)
            self._days_bytes -= old.nbytes
        return part

    def _first_day(self, appid: str, app: AppState) -> IntArray:
        assert app.first_day is not None
        cached = self._first.get(appid)
        if cached is None or cached[0] != app.first_day:
            cached = (app.first_day, np.load(self.app_dir(appid) / app.first_day))
            self._first[appid] = cached
        return cached[1]

    def _device_list(self, appid: str, app: AppState) -> list[str]:
        if app.devices is None:
            return []
        cached = self._devices.get(appid)
        if cached is None or cached[0] != app.devices:
            table = pq.read_table(self.app_dir(appid) / app.devices).sort_by("id")
            names = table.column("device").to_pylist()
            assert table.column("id").to_pylist() == list(range(1, len(names) + 1))
            cached = (app.devices, names)
            self._devices[appid] = cached
        return cached[1]

    def _window_table(self, appid: str, app: AppState) -> _WindowTable:
        assert app.windows is not None
        cached = self._windows.get(appid)
        if cached is None or cached[0] != app.windows:
            cached = (app.windows, _WindowTable.load(self.app_dir(appid) / app.windows))
            self._windows[appid] = cached
        return cached[1]

    # -- writing (callers hold the lake's write lock) -----------------------------------

    def catch_up(self, progress: Progress = _no_progress) -> int:
        """Apply every committed batch the state has not seen; returns the new version."""
        with self._lock:
            manifest = self._read_manifest()
            with self.lake.catalog.connect() as con:
                version = int(con.execute("SELECT COALESCE(MAX(id), 0) FROM batches").fetchone()[0])
                rows = con.execute(
                    "SELECT DISTINCT appid, day FROM files WHERE batch_id > ? AND batch_id <= ?",
                    (manifest.version, version),
                ).fetchall()
            now = time.time()
            due = manifest.due(now)
            if version == manifest.version and not due:
                self.manifest = manifest
                return version
            touched: dict[str, set[str]] = {}
            for appid, day in rows:
                touched.setdefault(appid, set()).add(day)
            new = Manifest(version, dict(manifest.apps), dict(manifest.failed))
            for appid, failure in manifest.failed.items():  # its days wait for the retry
                days = touched.pop(appid, set()) | set(failure.days)
                if appid in due:
                    touched[appid] = days
                else:
                    new.failed[appid] = Failure(
                        sorted(days), failure.error, failure.attempts, failure.last_try
                    )
            for k, (appid, days) in enumerate(sorted(touched.items())):
                old = manifest.apps.get(appid, AppState())

                def one_of_all(desc: str, frac: float, k: int = k) -> None:
                    progress(desc, (k + frac) / len(touched))

                try:
                    new.apps[appid] = _Builder(self, appid, old, version).apply(days, one_of_all)
                    if new.failed.pop(appid, None) is not None:
                        log.info("portrait state of %s is up to date again", appid)
                except Exception as exc:
                    # One app's failure must not hold back the others (nor their answers).
                    attempts = manifest.failed[appid].attempts + 1 if appid in due else 1
                    first_line = (str(exc).splitlines() or [""])[0][:200]
                    error = f"{type(exc).__name__}: {first_line}"
                    new.failed[appid] = Failure(sorted(days), error, attempts, now)
                    log.exception(
                        "portrait state of %s failed to update (attempt %d); its portraits "
                        "are computed from the lake until a retry after %s",
                        appid,
                        attempts,
                        dt.datetime.fromtimestamp(new.failed[appid].next_try(), dt.UTC),
                    )
            self._publish(manifest, new)
            self.manifest = new
            return version

    def rebuild(self, progress: Progress = _no_progress) -> int:
        """Throw the state away and build it again from the lake."""
        import shutil

        with self._lock:
            shutil.rmtree(self.root, ignore_errors=True)
            self.manifest = Manifest()
            self._first.clear()
            self._devices.clear()
            self._windows.clear()
            self._days.clear()
            self._days_bytes = 0
            return self.catch_up(progress)

    def _publish(self, old: Manifest, new: Manifest) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.root / "manifest.json", new.to_json().encode())
        # Keep the previous version's files for readers still using it; drop the rest.
        keep = {
            self.app_dir(a) / f for m in (old, new) for a, s in m.apps.items() for f in s.files()
        }
        for path in self.root.glob("appid=*/**/*"):
            if path.is_file() and path not in keep:
                path.unlink(missing_ok=True)


class _Builder:
    """Applies the touched days of one appid at catalog version ``version``."""

    def __init__(self, store: StateStore, appid: str, old: AppState, version: int) -> None:
        self.store = store
        self.appid = appid
        self.old = old
        self.version = version
        self.dir = store.app_dir(appid)
        self.app = AppState(
            users=list(old.users),
            n_users=old.n_users,
            first_day=old.first_day,
            devices=old.devices,
            days=dict(old.days),
            windows=old.windows,
            head=old.head,
            sizes=dict(old.sizes),
        )

    def apply(self, days: set[str], progress: Progress = _no_progress) -> AppState:
        (self.dir / "days").mkdir(parents=True, exist_ok=True)
        (self.dir / "users").mkdir(parents=True, exist_ok=True)
        first = (
            np.load(self.dir / self.old.first_day) if self.old.first_day else np.empty(0, np.int32)
        )
        lowered: set[int] = set()
        old_days = {day_number(d) for d in self.old.days}
        built: list[DayPart] = []
        con = self.store.lake.connect()
        try:
            self._load_devices(con)
            chunks = list(self._chunks(sorted(days)))
            for i, chunk in enumerate(chunks):
                progress("day partitions", 0.7 * i / len(chunks))
                for part in self._build(con, chunk):
                    if len(first) < self.app.n_users:
                        first = np.concatenate(
                            [first, np.full(self.app.n_users - len(first), NO_DAY, np.int32)]
                        )
                    before = first[part.uid]
                    moved = (before > part.day) & (before != NO_DAY)
                    lowered.update(int(d) for d in np.unique(before[moved]))
                    first[part.uid] = np.minimum(before, part.day)
                    self._write_day(part)
                    if len(built) < 2:
                        built.append(part)
            self._write_devices(con)
        finally:
            con.close()
        self.app.first_day = f"first_day.b{self.version}.npy"
        _atomic_save(self.dir / self.app.first_day, first)
        changed = {day_number(d) for d in days}
        # The common cases: a new newest day, or more events for the newest day (a live
        # flush). Lake events are only ever added (compaction keeps them), so a rebuilt
        # newest day holds every value its previous version held or a later one of the
        # same day: applying it again over the head gives the head as if applied once.
        if (
            len(built) == 1
            and self.old.head
            and old_days
            and built[0].day >= max(old_days)
            and not lowered
        ):
            progress("windows", 0.7)
            self._append_day(built[0], first)
        else:
            self._update_windows(changed | lowered, first, progress)
            self._update_head(changed)
        progress("up to date", 1.0)
        return self.app

    def _append_day(self, part: DayPart, first: IntArray) -> None:
        """A new (or grown) newest day: move the head forward; windows ending on it from it."""
        assert self.old.head is not None
        head = _Head.load(self.dir / self.old.head, self.app.n_users)
        head.fold(part)
        self._save_head(head)
        windows = head.windows(STANDARD_LENGTHS, first, _sizes(self.app))
        fresh = {(n, part.day): w for n, w in windows.items()}
        self._save_windows(fresh)

    def _save_head(self, head: _Head) -> None:
        self.app.head = f"head.b{self.version}.npys"
        head.save(self.dir / self.app.head)

    def _save_windows(self, fresh: Mapping[tuple[int, int], WindowCounts]) -> None:
        old = (
            _WindowTable.load(self.dir / self.old.windows)
            if self.old.windows
            else _WindowTable.empty()
        )
        table = old.without(set(fresh)).plus(fresh)
        self.app.windows = f"windows.b{self.version}.npz"
        table.save(self.dir / self.app.windows)

    def _load_devices(self, con: Any) -> None:
        if self.app.devices:
            path = sql_str(str(self.dir / self.app.devices))
            con.execute(
                "CREATE TEMP TABLE devices AS SELECT device, id "
                f"FROM read_parquet({path}, hive_partitioning=false)"
            )
        else:
            con.execute("CREATE TEMP TABLE devices (device VARCHAR, id INTEGER)")
        self.n_devices = _scalar(con, "SELECT count(*) FROM devices")

    def _chunks(self, days: list[str]) -> Iterator[list[str]]:
        rows: dict[str, int] = {}
        for f in self.store.lake.files(self.appid):
            rows[f.day] = rows.get(f.day, 0) + f.rows
        chunk: list[str] = []
        size = 0
        for day in days:
            if chunk and size + rows.get(day, 0) > CHUNK_EVENTS:
                yield chunk
                chunk, size = [], 0
            chunk.append(day)
            size += rows.get(day, 0)
        if chunk:
            yield chunk

    def _build(self, con: Any, days: list[str]) -> Iterator[DayPart]:
        """Day partitions of ``days``, rebuilt from all their lake files up to the version."""
        wanted = set(days)
        with self.store.lake.catalog.connect() as cat:
            files = [
                str(self.store.lake.root / r[0])
                for r in cat.execute(
                    "SELECT path, day FROM files WHERE appid = ? AND batch_id <= ? ORDER BY path",
                    (self.appid, self.version),
                )
                if r[1] in wanted
            ]
        if not files:
            return
        listing = "[" + ", ".join(sql_str(p) for p in files) + "]"
        # Devices of these days ranked in string order, so that "latest ts, then the larger
        # model" packs into one integer like the id dimensions (a struct max costs 2x).
        con.execute(
            "CREATE OR REPLACE TEMP TABLE drank AS SELECT device, "
            "CAST(row_number() OVER (ORDER BY device) AS BIGINT) AS r FROM (SELECT DISTINCT "
            f"device FROM read_parquet({listing}, hive_partitioning=false) "
            "WHERE device IS NOT NULL)"
        )
        # Latest event carrying the attribute wins; at equal ts the larger id (one BIGINT
        # key: microseconds since the day's midnight, < 2^37, then the id or the rank).
        rel = "(epoch_us(e.ts) - epoch_us(CAST(e.day AS TIMESTAMPTZ)))"
        winners = ", ".join(
            f"CAST(max({rel} * {1 << _ID_BITS} + e.{col}) % {1 << _ID_BITS} AS INTEGER) AS {dim}"
            for dim, col in DIM_COLUMNS.items()
            if dim != "devices"
        )
        con.execute(
            "CREATE OR REPLACE TEMP TABLE daily AS "
            f"SELECT e.day, e.openid, {winners}, "
            f"CAST(max({rel} * {1 << _RANK_BITS} + k.r) % {1 << _RANK_BITS} AS BIGINT) AS drank "
            f"FROM read_parquet({listing}, hive_partitioning=true, "
            "hive_types={'appid': VARCHAR, 'day': DATE}) e "
            "LEFT JOIN drank k ON k.device = e.device GROUP BY e.day, e.openid"
        )
        # One pass over the user dictionary: each (day, user) row gets its uid or NULL
        # (DuckDB builds the hash table on the smaller side, so the 3 M known users are
        # streamed from their Parquet parts, never loaded into a table).
        if self.app.users:
            listing = ", ".join(sql_str(str(self.dir / f)) for f in self.app.users)
            known = f"read_parquet([{listing}], hive_partitioning=false)"
        else:
            known = "(SELECT NULL::VARCHAR AS openid, NULL::UINTEGER AS uid WHERE false)"
        con.execute(
            "CREATE OR REPLACE TEMP TABLE matched AS SELECT d.*, u.uid FROM daily d "
            f"LEFT JOIN {known} u USING (openid)"
        )
        n = self.app.n_users
        con.execute(
            "CREATE OR REPLACE TEMP TABLE fresh AS SELECT openid, CAST("
            f"{n} + row_number() OVER (ORDER BY first, openid) - 1 AS UINTEGER) AS uid FROM "
            "(SELECT openid, min(day) AS first FROM matched WHERE uid IS NULL GROUP BY openid)"
        )
        added = _scalar(con, "SELECT count(*) FROM fresh")
        if added:
            part = f"users/u{self.version}_{n}.parquet"
            target = sql_str(str(self.dir / part))
            con.execute(
                f"COPY (SELECT * FROM fresh ORDER BY uid) TO {target} "
                "(FORMAT parquet, COMPRESSION zstd)"
            )
            self.app.users.append(part)
            self.app.n_users = n + added
        con.execute(
            f"INSERT INTO devices SELECT device, CAST({self.n_devices} + row_number() OVER"
            " (ORDER BY device) AS INTEGER) FROM drank d"
            " WHERE NOT EXISTS (SELECT 1 FROM devices x WHERE x.device = d.device)"
        ).fetchall()
        self.n_devices = _scalar(con, "SELECT count(*) FROM devices")
        con.execute(
            "CREATE OR REPLACE TEMP TABLE drank_id AS "
            "SELECT k.r, x.id FROM drank k JOIN devices x USING (device)"
        )
        # Each column in the dtype the day partition keeps, so numpy takes it as it is.
        values = ", ".join(
            f"CAST(COALESCE(d.{dim}, 0) AS {_SQL_TYPES[dim]}) AS {dim}" for dim in ID_DIMS
        )
        result = con.sql(
            f"SELECT d.day, COALESCE(d.uid, f.uid) AS uid, {values}, CAST(COALESCE(x.id, 0) AS "
            f"{_SQL_TYPES['devices']}) AS devices FROM matched d "
            "LEFT JOIN fresh f ON d.uid IS NULL AND f.openid = d.openid "
            "LEFT JOIN drank_id x ON x.r = d.drank ORDER BY d.day, uid"
        ).to_arrow_table()
        day_col = result.column("day").cast(pa.int32()).to_numpy()
        cuts = np.flatnonzero(np.diff(day_col)) + 1
        starts = [0, *cuts.tolist()]
        stops = [*cuts.tolist(), len(day_col)]
        columns = {name: result.column(name).to_numpy() for name in ("uid", *DIMS)}
        for a, b in zip(starts, stops, strict=True):
            if a == b:
                continue
            yield DayPart(
                int(day_col[a]),
                columns["uid"][a:b].astype(np.uint32, copy=False),
                {d: columns[d][a:b].astype(_DTYPES[d], copy=False) for d in DIMS},
            )

    def _write_day(self, part: DayPart) -> None:
        day = day_date(part.day).isoformat()
        name = f"days/{day}.b{self.version}.npz"
        buf = self.dir / (name + ".tmp")
        with buf.open("wb") as fh:
            arrays: dict[str, Any] = {"uid": part.uid}
            arrays.update({d: part.values[d] for d in DIMS})
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        buf.replace(self.dir / name)
        self.app.days[day] = name
        for d in DIMS:
            top = int(part.values[d].max()) if len(part.uid) else 0
            self.app.sizes[d] = max(self.app.sizes[d], top + 1)
        self.store._days.pop((self.appid, name), None)

    def _write_devices(self, con: Any) -> None:
        if self.n_devices == 0:
            return
        self.app.devices = f"devices.b{self.version}.parquet"
        target = self.dir / self.app.devices
        table = con.sql("SELECT device, id FROM devices ORDER BY id").to_arrow_table()
        pq.write_table(table, str(target) + ".tmp")
        Path(str(target) + ".tmp").replace(target)

    def _update_windows(
        self, changed: set[int], first: IntArray, progress: Progress = _no_progress
    ) -> None:
        """Recompute the standard windows that contain a changed day (see docs).

        Windows ending after the newest day are not kept (they are computed when asked;
        the next day replaces them anyway).
        """
        present = {day_number(d) for d in self.app.days}
        lo, hi = min(present), max(present)
        wanted = []
        for n in STANDARD_LENGTHS:
            ends = {e for t in changed for e in range(t, t + n) if lo <= e <= hi}
            wanted.append((n, sorted(ends)))
        days = _LazyDays(lambda t: self._load_day(t), present)
        pairs = [(n, e) for n, ends in wanted for e in ends]
        # One by one, a window costs one overwrite per day inside it; the all-ends pass
        # costs about five of those per day it spans and per length (measured on 3 M
        # users). Late events for the last days change a few windows (5 for yesterday);
        # each window counted one by one holds per-user arrays, hence the cap.
        one_by_one = all_ends = 0
        if 0 < len(pairs) <= FEW_WINDOWS:
            one_by_one = sum(sum(1 for t in present if e - n < t <= e) for n, e in pairs)
            begin = min(e - n + 1 for n, e in pairs)
            all_ends = 5 * sum(1 for t in present if t >= begin) * len({n for n, _ in pairs})
        if one_by_one < all_ends:
            windows = few_windows(days, first, _sizes(self.app), pairs)
        else:
            windows = compute_windows(
                days,
                first,
                _sizes(self.app),
                wanted,
                tick=lambda f: progress("windows", 0.7 + 0.25 * f),
            )
        self._save_windows(windows)

    def _update_head(self, changed: set[int]) -> None:
        """The head after the rebuilt days ``changed``: patched in place when there is one
        (exact because lake events are only ever added, see _Head.fold), else built."""
        if self.old.head is None:
            present = sorted(day_number(d) for d in self.app.days)
            head = _Head.from_days((self._load_day(t) for t in present), self.app.n_users)
        else:
            head = _Head.load(self.dir / self.old.head, self.app.n_users)
            for t in sorted(changed):  # older days first, then new days in order
                head.fold(self._load_day(t))
        self._save_head(head)

    def _load_day(self, t: int) -> DayPart:
        return load_day(self.dir / self.app.days[day_date(t).isoformat()], t)


_HEAD_ARRAYS = ("newest", "last", *(f"v_{d}" for d in DIMS), *(f"a_{d}" for d in DIMS))
_DTYPES: dict[Dim, Any] = {
    "province": np.int16,
    "city": np.int16,
    "genders": np.int8,
    "platforms": np.int8,
    "ages": np.int8,
    "devices": np.int32,
}
_SQL_TYPES: dict[Dim, str] = {
    d: {np.int8: "TINYINT", np.int16: "SMALLINT", np.int32: "INTEGER"}[t]
    for d, t in _DTYPES.items()
}
_LONG_AGO = 255  # an age (days before the newest day) of 255 or more, or never


class _Head:
    """Per user, as of the newest day: how many days ago the user was last active and,
    per dim, the latest value and how many days ago it was seen. Any window ending on the
    newest day is one vectorised pass over it.

    Ages, not days: a window is at most 30 days long, so one byte per user and dim is
    enough (saturating at 255), and the head that is read and written on every added day
    is 18 bytes per user instead of 39.
    """

    def __init__(self, n_users: int) -> None:
        self.newest = np.full(1, NO_DAY, np.int32)  # the day ages count back from
        self.last = np.full(n_users, _LONG_AGO, np.uint8)
        self.val = {d: np.zeros(n_users, _DTYPES[d]) for d in DIMS}
        self.age = {d: np.full(n_users, _LONG_AGO, np.uint8) for d in DIMS}

    @classmethod
    def load(cls, path: Path, n_users: int) -> _Head:
        # The arrays one after the other, each with its .npy header: no zip, no CRC pass
        # as np.savez/np.load would do on every added day. Each is read straight into its
        # slot of the (possibly longer, new users) target array.
        head = cls(n_users)
        targets = head.arrays()
        with path.open("rb") as fh:
            for k in _HEAD_ARRAYS:
                version = npformat.read_magic(fh)
                read = npformat.read_array_header_1_0
                if version != (1, 0):
                    read = npformat.read_array_header_2_0
                shape, _, dtype = read(fh)
                target = targets[k]
                if dtype != target.dtype or len(shape) != 1 or shape[0] > len(target):
                    raise ValueError(f"{path}: unexpected array {k} {dtype}{shape}")
                view = memoryview(target[: shape[0]]).cast("B")
                if fh.readinto(view) != view.nbytes:
                    raise ValueError(f"{path}: truncated at {k}")
        return head

    def save(self, path: Path) -> None:
        arrays = self.arrays()
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as fh:
            for k in _HEAD_ARRAYS:
                np.save(fh, arrays[k])
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)

    def arrays(self) -> dict[str, Any]:
        out: dict[str, Any] = {"newest": self.newest, "last": self.last}
        for d in DIMS:
            out[f"v_{d}"] = self.val[d]
            out[f"a_{d}"] = self.age[d]
        return out

    @classmethod
    def from_days(cls, parts: Iterable[DayPart], n_users: int) -> _Head:
        """The head after ``parts`` (ascending days), with absolute days while building
        and ages once at the end: no per-day shift of every user's ages."""
        head = cls(n_users)
        last = np.full(n_users, -1, np.int32)
        day = {d: np.full(n_users, -1, np.int32) for d in DIMS}
        newest = None
        for part in parts:
            if newest is not None and part.day <= newest:
                raise ValueError(f"days must ascend: {part.day} after {newest}")
            newest = part.day
            uid = part.uid.astype(np.intp)
            last[uid] = part.day
            for d in DIMS:
                has = part.values[d] != 0
                u = uid[has]
                head.val[d][u] = part.values[d][has]
                day[d][u] = part.day
        if newest is None:
            return head
        head.newest[0] = newest
        for days, ages in ((last, head.last), *((day[d], head.age[d]) for d in DIMS)):
            age = np.subtract(newest, days, dtype=np.int64)
            age[days < 0] = _LONG_AGO  # never
            np.minimum(age, _LONG_AGO, out=age)
            ages[:] = age
        return head

    def fold(self, part: DayPart) -> None:
        """Fold in a (rebuilt) day partition: a new newest day, or one at or before it.

        A newer day first moves the head forward (every age grows). Then a user's value
        is replaced where the head's is from that day or older and kept where it is from
        a later day: exact for a day seen before, because a rebuilt day holds, per user
        and dim, the value its previous version held or a later one of that day (lake
        events are only ever added).
        """
        newest = int(self.newest[0])
        if newest == NO_DAY or part.day > newest:
            shift = min(part.day - newest, _LONG_AGO) if newest != NO_DAY else 0
            if shift:
                for ages in (self.last, *self.age.values()):  # everything is older now
                    np.minimum(ages, _LONG_AGO - shift, out=ages)
                    ages += shift
            self.newest[0] = newest = part.day
        age = newest - part.day
        if age >= _LONG_AGO:
            return  # too old to be in any window, now or later (ages only grow)
        uid = part.uid.astype(np.intp)
        self.last[uid] = np.minimum(self.last[uid], age)
        for d in DIMS:
            has = part.values[d] != 0
            u = uid[has]
            take = self.age[d][u] >= age
            self.val[d][u[take]] = part.values[d][has][take]
            self.age[d][u[take]] = age

    def windows(
        self, lengths: tuple[int, ...], first: IntArray, sizes: Mapping[Dim, int]
    ) -> dict[int, WindowCounts]:
        """The windows of ``lengths`` days ending on the newest day, one bincount per dim.

        Every age falls in a bucket j = the shortest window that contains it (len(lengths)
        = none). A value counts in window j when its bucket is <= j, a user is active when
        the bucket of ``last`` is and new when the bucket of the first day's age is; so
        one histogram over (value, value bucket, first bucket, last bucket) gives them all.
        """
        newest = int(self.newest[0])
        m = len(lengths)
        if list(lengths) != sorted(lengths) or not 1 <= lengths[0] <= lengths[-1] < _LONG_AGO:
            raise ValueError(f"window lengths must ascend within 1..{_LONG_AGO - 1}: {lengths}")
        bucket = np.full(_LONG_AGO + 1, m, np.uint8)  # age -> bucket
        for j in reversed(range(m)):
            bucket[: lengths[j]] = j
        b = m + 1
        # Users in no window (bucket m) stay in: cheaper than gathering the others.
        first_age = np.subtract(newest, first[: len(self.last)], dtype=np.int64)
        np.clip(first_age, 0, _LONG_AGO, out=first_age)
        who = bucket[first_age].astype(np.int64)  # (first bucket, last bucket)
        who *= b
        who += bucket[self.last]
        key = np.empty(len(self.last), np.int64)  # one buffer, updated in place per dim
        j_le = np.arange(b)[:, None] <= np.arange(m)[None, :]  # [bucket, window]: inside?
        out = {n: WindowCounts(new={}, active={}) for n in lengths}
        for d in DIMS:
            np.copyto(key, self.val[d], casting="unsafe")
            key *= b
            key += bucket[self.age[d]]
            key *= b * b
            key += who
            hist = np.bincount(key, minlength=sizes[d] * b**3).reshape(sizes[d], b, b, b)
            by_value = hist.sum(axis=2)  # [value, value bucket, last bucket]
            by_value_new = hist.sum(axis=3)  # [value, value bucket, first bucket]
            for j, n in enumerate(lengths):
                inside = j_le[:, j]
                active = by_value[:, inside][:, :, inside].sum(axis=(1, 2))
                new = by_value_new[:, inside][:, :, inside].sum(axis=(1, 2))
                active_users = by_value[:, :, inside].sum()
                new_users = by_value_new[:, :, inside].sum()
                active[0] += active_users - active.sum()  # active, no value inside: 未知
                new[0] += new_users - new.sum()
                out[n].active[d] = active
                out[n].new[d] = new
        return out


def _scalar(con: Any, sql: str) -> int:
    # fetchall, not fetchone: DuckDB 2 keeps a half-read result open on the connection.
    return int(con.execute(sql).fetchall()[0][0])


def load_day(path: Path, t: int) -> DayPart:
    with np.load(path) as z:
        return DayPart(t, z["uid"], {d: z[d] for d in DIMS})


def _sizes(app: AppState) -> dict[Dim, int]:
    return {d: int(app.sizes[d]) for d in DIMS}


class _LazyDays(Mapping[int, DayPart]):
    """Day partitions loaded on access, so a pass over 40 days holds one at a time."""

    def __init__(self, load: Any, present: set[int]) -> None:
        self._load = load
        self._present = present

    def __getitem__(self, t: int) -> DayPart:
        if t not in self._present:
            raise KeyError(t)
        part: DayPart = self._load(t)
        return part

    def __iter__(self) -> Iterator[int]:
        return iter(sorted(self._present))

    def __len__(self) -> int:
        return len(self._present)


_AUDIENCES = ("new", "active")


class _WindowTable:
    """Nonzero counts of many windows, sorted by (length, end), with an index of slices."""

    def __init__(self, cols: dict[str, np.ndarray[Any, Any]]) -> None:
        order = np.lexsort((cols["end"], cols["length"]))
        self.cols = {k: v[order] for k, v in cols.items()}
        self.index: dict[tuple[int, int], tuple[int, int]] = {}
        if len(order):
            keys = np.stack([self.cols["length"], self.cols["end"]], axis=1)
            cuts = np.flatnonzero(np.any(np.diff(keys, axis=0) != 0, axis=1)) + 1
            starts = [0, *cuts.tolist()]
            stops = [*cuts.tolist(), len(order)]
            for a, b in zip(starts, stops, strict=True):
                self.index[(int(keys[a, 0]), int(keys[a, 1]))] = (a, b)

    @classmethod
    def empty(cls) -> _WindowTable:
        return cls({k: np.empty(0, t) for k, t in _WINDOW_COLS.items()})

    @classmethod
    def load(cls, path: Path) -> _WindowTable:
        with np.load(path) as z:
            return cls({k: z[k] for k in _WINDOW_COLS})

    def save(self, path: Path) -> None:
        _atomic_savez(path, self.cols)

    def without(self, keys: set[tuple[int, int]]) -> _WindowTable:
        if not keys:
            return self
        drop = np.zeros(len(self.cols["end"]), bool)
        for key in keys & set(self.index):
            a, b = self.index[key]
            drop[a:b] = True
        return _WindowTable({k: v[~drop] for k, v in self.cols.items()})

    def plus(self, windows: Mapping[tuple[int, int], WindowCounts]) -> _WindowTable:
        parts = [self.cols]
        for (n, e), w in windows.items():
            for a, audience in enumerate((w.new, w.active)):
                for di, d in enumerate(DIMS):
                    ids = np.flatnonzero(audience[d])
                    parts.append(
                        {
                            "length": np.full(len(ids), n, np.int16),
                            "end": np.full(len(ids), e, np.int32),
                            "audience": np.full(len(ids), a, np.int8),
                            "dim": np.full(len(ids), di, np.int8),
                            "value": ids.astype(np.int32),
                            "n": audience[d][ids].astype(np.int64),
                        }
                    )
        return _WindowTable({k: np.concatenate([p[k] for p in parts]) for k in _WINDOW_COLS})

    def get(self, n: int, end: int, devices: list[str]) -> PortraitCounts | None:
        hit = self.index.get((n, end))
        if hit is None:
            return None
        a, b = hit
        out = PortraitCounts.empty()
        cols = [self.cols[k][a:b].tolist() for k in ("audience", "dim", "value", "n")]
        for aud, di, value, count in zip(*cols, strict=True):
            _add(out.new if aud == 0 else out.active, DIMS[di], value, count, devices)
        return out


_WINDOW_COLS: dict[str, Any] = {
    "length": np.int16,
    "end": np.int32,
    "audience": np.int8,
    "dim": np.int8,
    "value": np.int32,
    "n": np.int64,
}


def to_portrait(w: WindowCounts, devices: list[str]) -> PortraitCounts:
    out = PortraitCounts.empty()
    for audience, arrays in ((out.new, w.new), (out.active, w.active)):
        for d in DIMS:
            ids = np.flatnonzero(arrays[d])
            for value, count in zip(ids.tolist(), arrays[d][ids].tolist(), strict=True):
                _add(audience, d, value, count, devices)
    return out


def _add(audience: AudienceCounts, dim: Dim, value: int, count: int, devices: list[str]) -> None:
    if dim == "devices":
        audience.devices[devices[value - 1] if value else None] = count
    else:
        audience.ids[dim][value] = count


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def _atomic_save(path: Path, array: np.ndarray[Any, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        np.save(fh, array)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def _atomic_savez(path: Path, arrays: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


_lock_files: dict[Path, Any] = {}


def _try_write_lock(lake: Lake) -> bool:
    """Take the lake's writer lock if nobody holds it (readers never wait for writers)."""
    fh = open(lake.root / "write.lock", "a+b")  # noqa: SIM115 - held until _unlock
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return False
    _lock_files[lake.root] = fh
    return True


def _unlock(lake: Lake) -> None:
    fh = _lock_files.pop(lake.root)
    fcntl.flock(fh, fcntl.LOCK_UN)
    fh.close()


def update_state(lake: Lake, progress: Progress = _no_progress) -> None:
    """The ingest hook: bring the state up to the catalog after a committed batch.

    A failure here never undoes the batch (the lake is the truth); the next reader or
    writer catches up.
    """
    try:
        with lake.write_lock():
            StateStore(lake).catch_up(progress)
    except Exception:
        log.exception("incremental state update failed; it will catch up later")
