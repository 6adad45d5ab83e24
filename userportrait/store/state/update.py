"""The update policy: bring the state up to the catalog after committed batches.

Per touched appid the touched days are rebuilt from the lake (``partitions.py``); then
either the head moves on and the windows ending on the new newest day come from it (a new
day, or more events for the newest day: a live flush), or the standard windows holding a
changed day are recounted and the head is patched (late events, back-fills). Apps are
updated one at a time; a failed app is recorded in the manifest and retried with back-off
(``manifest.Failure``), and never holds back the others.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Protocol

import numpy as np

from userportrait.store.durable import atomic_write
from userportrait.store.lake import Lake
from userportrait.store.state.days import LazyDays, day_date, day_number, load_day, save_day
from userportrait.store.state.head import Head
from userportrait.store.state.manifest import AppState, Failure, Manifest
from userportrait.store.state.partitions import PartitionBuilder
from userportrait.store.state.table import WindowTable
from userportrait.store.windows import (
    NO_DAY,
    DayPart,
    IntArray,
    WindowCounts,
    compute_windows,
    few_windows,
)

log = logging.getLogger("userportrait.state")

#: Window lengths whose counts are kept for every end day (WeChat's spans).
STANDARD_LENGTHS = (1, 7, 30)
#: At most this many windows are recounted one by one (each holds ~12 bytes per user).
FEW_WINDOWS = 8
#: Reports what the state update is doing: (description, fraction done).
Progress = Callable[[str, float], None]


class DayPartitions(Protocol):
    """Builds day partitions for ``AppUpdate`` (``partitions.PartitionBuilder`` with DuckDB;
    ``spark build`` passes one that runs on Spark). It extends the app's user and device
    dictionaries; everything else in the state is written by the code here."""

    def __enter__(self) -> DayPartitions: ...

    def __exit__(self, *exc: object) -> None: ...

    def chunks(self, days: list[str]) -> Iterator[list[str]]: ...

    def build(self, days: list[str]) -> Iterator[DayPart]: ...

    def finish(self) -> None: ...


#: (lake, appid, app state to extend, app directory, catalog version) -> a builder.
PartitionSource = Callable[[Lake, str, AppState, Path, int], DayPartitions]


def no_progress(_desc: str, _frac: float) -> None:
    pass


def app_dir(root: Path, appid: str) -> Path:
    return root / f"appid={appid}"


def catch_up(
    lake: Lake, progress: Progress = no_progress, partitions: PartitionSource = PartitionBuilder
) -> Manifest:
    """Apply every committed batch the state has not seen (caller holds the write lock)."""
    root = lake.state_dir
    manifest = Manifest.read(root)
    version = lake.catalog.version()
    now = time.time()
    due = manifest.due(now)
    if version == manifest.version and not due:
        return manifest
    touched: dict[str, set[str]] = {}
    for appid, day in lake.catalog.touched(manifest.version, version):
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
            new.apps[appid] = AppUpdate(lake, appid, old, version, partitions).apply(
                days, one_of_all
            )
            if new.failed.pop(appid, None) is not None:
                log.info("portrait state of %s is up to date again", appid)
        except Exception as exc:
            # One app's failure must not hold back the others (nor their answers).
            attempts = manifest.failed[appid].attempts + 1 if appid in due else 1
            first_line = (str(exc).splitlines() or [""])[0][:200]
            new.failed[appid] = Failure(
                sorted(days), f"{type(exc).__name__}: {first_line}", attempts, now
            )
            log.exception(
                "portrait state of %s failed to update (attempt %d); its portraits "
                "are computed from the lake until a retry after %s",
                appid,
                attempts,
                dt.datetime.fromtimestamp(new.failed[appid].next_try(), dt.UTC),
            )
    publish(root, manifest, new)
    return new


def publish(root: Path, old: Manifest, new: Manifest) -> None:
    """Write the manifest last; keep the previous version's files for readers still using
    it and drop every other file."""
    new.write(root)
    keep = {app_dir(root, a) / f for m in (old, new) for a, s in m.apps.items() for f in s.files()}
    for path in root.glob("appid=*/**/*"):
        if path.is_file() and path not in keep:
            path.unlink(missing_ok=True)


def remove_state(lake: Lake) -> None:
    """Throw the derived state away (it is rebuilt from the lake)."""
    shutil.rmtree(lake.state_dir, ignore_errors=True)


def update_state(lake: Lake, progress: Progress = no_progress) -> None:
    """The writers' hook: bring the state up to the catalog after a committed batch.

    A failure here never undoes the batch (the lake is the truth); the next reader or
    writer catches up.
    """
    try:
        with lake.write_lock():
            catch_up(lake, progress)
    except Exception:
        log.exception("incremental state update failed; it will catch up later")


class AppUpdate:
    """Applies the touched days of one appid at catalog version ``version``."""

    def __init__(
        self,
        lake: Lake,
        appid: str,
        old: AppState,
        version: int,
        partitions: PartitionSource = PartitionBuilder,
    ) -> None:
        self.lake = lake
        self.partitions = partitions
        self.appid = appid
        self.old = old
        self.version = version
        self.dir = app_dir(lake.state_dir, appid)
        self.app = old.copy()

    def apply(self, days: set[str], progress: Progress = no_progress) -> AppState:
        (self.dir / "days").mkdir(parents=True, exist_ok=True)
        (self.dir / "users").mkdir(parents=True, exist_ok=True)
        first = (
            np.load(self.dir / self.old.first_day) if self.old.first_day else np.empty(0, np.int32)
        )
        lowered: set[int] = set()
        old_days = {day_number(d) for d in self.old.days}
        built: list[DayPart] = []
        with self.partitions(self.lake, self.appid, self.app, self.dir, self.version) as parts:
            chunks = list(parts.chunks(sorted(days)))
            for i, chunk in enumerate(chunks):
                progress("day partitions", 0.7 * i / len(chunks))
                for part in parts.build(chunk):
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
            parts.finish()
        self.app.first_day = f"first_day.b{self.version}.npy"
        atomic_write(self.dir / self.app.first_day, lambda fh: np.save(fh, first))
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

    def _write_day(self, part: DayPart) -> None:
        day = day_date(part.day).isoformat()
        name = f"days/{day}.b{self.version}.npz"
        save_day(self.dir / name, part)
        self.app.days[day] = name
        for d, values in part.values.items():
            top = int(values.max()) if len(part.uid) else 0
            self.app.sizes[d] = max(self.app.sizes[d], top + 1)

    def _append_day(self, part: DayPart, first: IntArray) -> None:
        """A new (or grown) newest day: move the head forward; windows ending on it from it."""
        assert self.old.head is not None
        head = Head.load(self.dir / self.old.head, self.app.n_users)
        head.fold(part)
        self._save_head(head)
        windows = head.windows(STANDARD_LENGTHS, first, self.app.value_sizes())
        fresh = {(n, part.day): w for n, w in windows.items()}
        self._save_windows(fresh)

    def _save_head(self, head: Head) -> None:
        self.app.head = f"head.b{self.version}.npys"
        head.save(self.dir / self.app.head)

    def _save_windows(self, fresh: Mapping[tuple[int, int], WindowCounts]) -> None:
        old = (
            WindowTable.load(self.dir / self.old.windows)
            if self.old.windows
            else WindowTable.empty()
        )
        table = old.without(set(fresh)).plus(fresh)
        self.app.windows = f"windows.b{self.version}.npz"
        table.save(self.dir / self.app.windows)

    def _update_windows(
        self, changed: set[int], first: IntArray, progress: Progress = no_progress
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
        days = LazyDays(lambda t: self._load_day(t), present)
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
            windows = few_windows(days, first, self.app.value_sizes(), pairs)
        else:
            windows = compute_windows(
                days,
                first,
                self.app.value_sizes(),
                wanted,
                tick=lambda f: progress("windows", 0.7 + 0.25 * f),
            )
        self._save_windows(windows)

    def _update_head(self, changed: set[int]) -> None:
        """The head after the rebuilt days ``changed``: patched in place when there is one
        (exact because lake events are only ever added, see Head.fold), else built."""
        if self.old.head is None:
            present = sorted(day_number(d) for d in self.app.days)
            head = Head.from_days((self._load_day(t) for t in present), self.app.n_users)
        else:
            head = Head.load(self.dir / self.old.head, self.app.n_users)
            for t in sorted(changed):  # older days first, then new days in order
                head.fold(self._load_day(t))
        self._save_head(head)

    def _load_day(self, t: int) -> DayPart:
        return load_day(self.dir / self.app.days[day_date(t).isoformat()], t)
