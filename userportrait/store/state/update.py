"""The update policy: bring the state up to the catalog after committed batches.

Per touched appid the touched days are rebuilt from the lake (``partitions.py``); then the
span histograms of the days from the earliest changed one on are replayed day by day
(``spans.py``), from the latest kept head before it: one day for a new day or a live
flush, two for late events for yesterday, everything for a first load. Only the end days
a change can reach are replayed: those up to 365 days after a changed day or after the
old first day of a user whose first day moved; further days with data (far-future ones)
keep their files, and the replay starts again after such a gap from the days before it
(issue 24, hole 7). Apps are updated one at a time; a failed app is recorded in the
manifest and retried with back-off (``manifest.Failure``), and never holds back the
others.
"""

from __future__ import annotations

import bisect
import datetime as dt
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import numpy as np

from userportrait.portrait.dims import DIMS
from userportrait.portrait.rules import WECHAT_SPANS
from userportrait.store.durable import atomic_write
from userportrait.store.lake import Lake
from userportrait.store.state.days import (
    day_date,
    day_number,
    load_day,
    merge_winners,
    rows_of,
    save_day,
    save_keys,
)
from userportrait.store.state.head import LONG_AGO, ROOM, Head
from userportrait.store.state.manifest import AppState, Failure, Manifest
from userportrait.store.state.overlay import (
    OVERLAY_USERS_MAX,
    FoldNames,
    Overlay,
    write_folded,
)
from userportrait.store.state.partitions import PartitionBuilder
from userportrait.store.state.prefetch import Prefetched
from userportrait.store.state.spans import SpanCounter
from userportrait.store.windows import NO_DAY, DayPart, IntArray

log = logging.getLogger("userportrait.state")

#: Window lengths WeChat answers (every span up to ``spans.HORIZON`` is a lookup).
STANDARD_LENGTHS = WECHAT_SPANS
#: Heads kept for the last days with data, so late events for yesterday replay two days.
KEEP_HEADS = 3
#: Reports what the state update is doing: (description, fraction done).
Progress = Callable[[str, float], None]


class DayPartitions(Protocol):
    """Builds day partitions for ``AppUpdate`` (``partitions.PartitionBuilder`` with DuckDB;
    ``spark build`` passes one that runs on Spark). It extends the app's user and device
    dictionaries, the users before the first day comes out (the histograms are sized by
    them); everything else in the state is written by the code here."""

    def __enter__(self) -> DayPartitions: ...

    def __exit__(self, *exc: object) -> None: ...

    def build(self, days: list[str], *, keyed: str | None = None) -> Iterator[DayPart]:
        """Day partitions of ``days``, in day order; ``keyed`` names the one whose winners'
        times are wanted (``DayPart.keys``), if the builder keeps times."""
        ...

    def finish(self) -> None: ...


#: Has a file written by the update's writer thread: ``write(lambda: save(...))``.
FileWrite = Callable[[Callable[[], None]], None]
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
    # The apps with the fewest touched days first (a live flush: one), and what is done
    # is published before an app with more: one app's long update (thousands of days)
    # does not hold back the others' answers (issue 24, hole 7). The manifest keeps the
    # old catalog version until every app is done (a crash redoes them all), and no file
    # is removed before then (every manifest in between names files of old or new).
    order = sorted(touched.items(), key=lambda item: (len(item[1]), item[0]))
    unpublished = False
    for k, (appid, days) in enumerate(order):
        old = manifest.apps.get(appid, AppState())
        if len(days) > 1 and unpublished:
            Manifest(manifest.version, dict(new.apps), dict(new.failed)).write(root)
            unpublished = False

        def one_of_all(desc: str, frac: float, k: int = k) -> None:
            progress(desc, (k + frac) / len(touched))

        try:
            new.apps[appid] = AppUpdate(lake, appid, old, version, partitions).apply(
                days, one_of_all
            )
            unpublished = True
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
        (self.dir / "spans").mkdir(parents=True, exist_ok=True)
        self.app.version = self.version
        if self._grows_newest(days):
            self._grow_newest(day_number(next(iter(days))), progress)
            progress("up to date", 1.0)
            return self.app
        self._fold_overlay()
        first = (
            np.load(self.dir / self.app.first_day) if self.app.first_day else np.empty(0, np.int32)
        )
        newest = max(day_number(d) for d in set(self.app.days) | days)
        self.app.keys = {d: f for d, f in self.app.keys.items() if day_number(d) == newest}
        t0 = min(day_number(d) for d in days)
        present = sorted({day_number(d) for d in self.app.days} | {day_number(d) for d in days})
        with self.partitions(self.lake, self.appid, self.app, self.dir, self.version) as parts:
            progress("building days", 0.0)
            n_before = self.app.n_users  # the builder's thread extends the dictionary
            built = parts.build(sorted(days), keyed=day_date(newest).isoformat())
            # The builder runs a chunk ahead in a thread: DuckDB counts the next days while
            # numpy folds these (they would otherwise take turns on the cores), and the
            # histograms as of the day before t0 are loaded meanwhile. The stream is closed
            # before the builder: its thread must stop before the connection does.
            with Prefetched(built) as stream, self._writer() as write:
                replay = self._replay(t0, present, first, n_before)
                replay.changed = sorted(day_number(d) for d in days)
                replay.write = write
                taken: list[int] = []

                def take(slices: list[DayPart]) -> None:
                    self._take(slices, newest, write)
                    taken.append(slices[0].day)
                    progress("building days", len(taken) / len(days))

                slices: list[DayPart] = []  # the parts so far of a day built in slices
                for part in stream:
                    if slices and slices[0].day != part.day:  # (its last slice was empty)
                        take(slices)
                        slices = []
                    slices.append(part)
                    if not part.more:  # the day is complete: written while it is folded
                        take(slices)
                        slices = []
                    first = self._grown(first)  # every user is matched before the first part
                    replay.head.grow(self.app.n_users)
                    # A late event can move a user's first day earlier; the days after it
                    # are replayed anyway (t0 is the earliest changed day).
                    uid = part.uid.astype(np.intp)
                    replay.moved(first[uid], part.day)
                    first[uid] = np.minimum(first[uid], part.day)
                    replay.fold_until(part.day, first)
                    replay.fold(part, first)
                if slices:
                    take(slices)
                self._save_first(first, write)  # (final: the days after only read it)
                replay.write = None  # (the writer's jobs are done when the ``with`` ends)
            parts.finish()
        replay.fold_until(present[-1] + 1, first)
        replay.close()
        self.app.heads = replay.heads
        progress("up to date", 1.0)
        return self.app

    @contextmanager
    def _writer(self) -> Iterator[FileWrite]:
        """``write(save)``: a file written by one thread beside the folding (a built day
        never changes; nor does the head once its last day is applied); every write done,
        and its error raised, before this ends."""
        jobs: list[Future[None]] = []
        with ThreadPoolExecutor(1, thread_name_prefix="state-write") as pool:
            yield lambda save: jobs.append(pool.submit(save))
        for job in jobs:
            job.result()

    def _take(self, slices: list[DayPart], newest: int, write: FileWrite) -> None:
        """Note a rebuilt day and have it written (its winners' times too if it is the
        newest), from its parts (one, or slices of ascending uids)."""
        part = slices[0] if len(slices) == 1 else _joined(slices)
        day = day_date(part.day).isoformat()
        self.app.days[day] = self._names(day).days
        path = self.dir / self.app.days[day]
        write(lambda: save_day(path, part))
        self._note_sizes(part)
        if part.day == newest and part.keys is not None:
            self.app.keys = {day: self._names(day).keys}
            keys = self.dir / self.app.keys[day]
            write(lambda: save_keys(keys, part))
        elif part.day == newest:  # a builder without times (Spark): no merging
            self.app.keys = {}

    def _replay(self, t0: int, present: list[int], first: IntArray, n: int) -> _Replay:
        """The span histograms and head (of ``n`` users) as of the day before ``t0``: from
        the latest kept head before ``t0`` (a new day, a live flush, late events for
        yesterday), else from a head built from the days before ``t0`` (a first load, a
        back-fill). Users the build adds cannot be active before ``t0``."""
        sizes = self.app.value_sizes()
        kept = {
            day_number(d): f
            for d, f in self.app.heads.items()
            if day_number(d) < t0 and d in self.app.spans
        }
        if kept:
            start = max(kept)
            # (room for the users this build adds: no copy of every user's row to grow)
            head = Head.load(self.dir / kept[start], n, spare=n // ROOM)
            spans = self.dir / self.app.spans[day_date(start).isoformat()]
            counter = SpanCounter.load(spans, sizes, start)
        else:
            before = (self._load_day(t) for t in present if t0 - LONG_AGO <= t < t0)
            head = Head.from_days(before, n)
            head.advance(t0 - 1)
            counter = SpanCounter.from_head(head, first, sizes)
        return _Replay(self, head, counter, t0, present)

    def _grows_newest(self, days: set[str]) -> bool:
        """More events for the newest day only (a live flush), with what merging needs."""
        if len(days) != 1 or not self.old.days:
            return False
        (day,) = days
        return (
            self.partitions is PartitionBuilder  # it can build the new batches alone
            and day == max(self.old.days)
            and day in self.old.keys
            and day in self.old.heads
            and day in self.old.spans
            and self.old.version > 0
        )

    def _grow_newest(self, t: int, progress: Progress) -> None:
        """Merge the new batches' winners into the newest day through its overlay and move
        its span histograms by those users only: a flush costs its batch, not its day
        (``overlay.py``)."""
        day = day_date(t).isoformat()
        old_users = self.old.n_users
        with PartitionBuilder(self.lake, self.appid, self.app, self.dir, self.version) as parts:
            progress("day partitions", 0.0)
            batch = list(parts.build([day], after=self.old.version, keyed=day))
            if not batch:
                return
            added = batch[0] if len(batch) == 1 else _joined(batch)  # (a batch in slices)
            overlay = self._overlay(day, t)
            inside, at = overlay.rows(added.uid)
            base = load_day(self.dir / self.old.days[day], t, self.dir / self.old.keys[day], True)
            before = rows_of(base, added.uid)
            head = Head.rows(self.dir / self.old.heads[day], added.uid.astype(np.intp))
            if inside.any():  # the overlay's rows are newer than the day's files
                rows = overlay.part
                assert rows.keys is not None and before.keys is not None
                for d in DIMS:
                    before.values[d][inside] = rows.values[d][at[inside]]
                    before.keys[d][inside] = rows.keys[d][at[inside]]
                head.put(np.flatnonzero(inside), overlay.head.take(at[inside]))
            delta = merge_winners(before, added, parts.device_names)
            parts.finish()
        assert self.old.first_day is not None
        first = np.load(self.dir / self.old.first_day)
        uid = delta.uid.astype(np.intp)
        counted = uid < old_users  # known users were counted (first day <= t) ...
        mine = uid[uid < len(first)]
        counted[uid < len(first)] = first[mine] <= t  # ... (the overlay's new users: t)
        local_first = np.full(len(uid), t, np.int32)
        local_first[uid < len(first)] = np.minimum(first[mine], t)
        progress("windows", 0.7)
        self._note_sizes(delta)
        counter = SpanCounter.load(self.dir / self.old.spans[day], self.app.value_sizes(), t)
        local = DayPart(t, np.arange(len(uid), dtype=np.uint32), delta.values)
        counter.regrow(head, local, local_first, counted)
        self.app.spans[day] = self._names(day).spans
        counter.save(self.dir / self.app.spans[day])
        overlay = overlay.updated(delta, head)
        self.app.overlay = {day: self._names(day).overlay}
        overlay.save(self.dir / self.app.overlay[day])
        if len(overlay) > OVERLAY_USERS_MAX:
            self._fold_overlay()

    def _overlay(self, day: str, t: int) -> Overlay:
        name = self.old.overlay.get(day)
        return Overlay.load(self.dir / name, t) if name else Overlay.empty(t)

    def _fold_overlay(self) -> None:
        """Write the newest day's files anew with its overlay folded in, before anything
        but a flush changes the state (and when a flush finds the overlay past
        ``OVERLAY_USERS_MAX``: the server's folder folds it earlier, ``folding.py``)."""
        if not self.app.overlay:
            return
        ((day, name),) = self.app.overlay.items()
        overlay = Overlay.load(self.dir / name, day_number(day))
        names = self._names(day)
        write_folded(self.dir, self.app, overlay, self.dir, names)
        names.set(self.app)

    def _grown(self, first: IntArray) -> IntArray:
        """``first`` with NO_DAY for the users the dictionary gained since it was read."""
        missing = self.app.n_users - len(first)
        return np.concatenate([first, np.full(missing, NO_DAY, np.int32)]) if missing > 0 else first

    def _names(self, day: str) -> FoldNames:
        """The names of ``day``'s files written at this version."""
        return FoldNames(day, f"b{self.version}")

    def _save_first(self, first: IntArray, write: FileWrite) -> None:
        self.app.first_day = f"first_day.b{self.version}.npy"
        path = self.dir / self.app.first_day
        write(lambda: atomic_write(path, lambda fh: np.save(fh, first)))

    def _note_sizes(self, part: DayPart) -> None:
        for d, values in part.values.items():
            top = int(values.max()) if len(part.uid) else 0
            self.app.sizes[d] = max(self.app.sizes[d], top + 1)

    def _load_day(self, t: int) -> DayPart:
        return load_day(self.dir / self.app.days[day_date(t).isoformat()], t)


def _joined(slices: list[DayPart]) -> DayPart:
    """One day partition of the slices of a day (disjoint users, ascending uids)."""
    keys = None
    if all(p.keys is not None for p in slices):
        keys = {d: np.concatenate([p.keys[d] for p in slices if p.keys is not None]) for d in DIMS}
    return DayPart(
        slices[0].day,
        np.concatenate([p.uid for p in slices]),
        {d: np.concatenate([p.values[d] for p in slices]) for d in DIMS},
        keys,
    )


class _Replay:
    """Folds the days from ``t0`` on into the span histograms and the head, in day order,
    as they come: the rebuilt ones from the builder, the others (days after a late event)
    from their files. A rebuilt day's users have their final first day once the days up
    to it are built (a later day cannot move a first day before itself), so folding
    need not wait for the whole build.

    A day's histograms and head hold the ages of the 366 days up to it (older is
    ``LONG_AGO``, never read) and the first-day ages of its users (clipped there too).
    So an end day ``E`` changes only if a changed day or the *old* first day of a user
    whose first day moved lies in ``E - 365 .. E``; any other day keeps its files (a
    user first seen now long before ``E`` moves only the never-read age bucket
    ``HORIZON``). Which days are reached is known in time: a first day moves from a
    later day to a changed one, folded after the days before it. After a run of
    skipped days longer than a year the head and histograms are rebuilt from the days
    with data of the 365 days before the next reached day instead of folding the run.
    """

    def __init__(
        self, update: AppUpdate, head: Head, counter: SpanCounter, t0: int, present: list[int]
    ) -> None:
        self.update = update
        self.head = head
        self.counter = counter
        self.todo = [t for t in present if t >= t0]
        self.present = present
        self.keep = set(present[-KEEP_HEADS:])
        app = update.app
        self.heads = {d: f for d, f in app.heads.items() if day_number(d) in self.keep}
        self.open: int | None = None  # the day folded last, not yet saved
        self.write: FileWrite | None = None  # the update's writer thread, while it runs
        self.head_saved: int | None = None  # the day whose head the writer saved
        self.changed: list[int] = []  # the rebuilt days (ascending)
        self.old_firsts = np.empty(0, np.int32)  # moved users' old first days (unique)
        self.skipped: list[int] = []  # days left as they are since the last one folded

    def moved(self, old: IntArray, day: int) -> None:
        """Note the old first days of the users of ``day`` first seen later until now."""
        later = old[(old > day) & (old != NO_DAY)]
        if len(later):
            self.old_firsts = np.union1d(self.old_firsts, later)

    def reached(self, t: int) -> bool:
        """Whether a change can reach the histograms and head of end day ``t``."""
        i = bisect.bisect_right(self.changed, t)
        if i and t - self.changed[i - 1] < LONG_AGO:
            return True
        j = int(np.searchsorted(self.old_firsts, t, side="right"))
        return bool(j and t - int(self.old_firsts[j - 1]) < LONG_AGO)

    def _resume(self, t: int, first: IntArray) -> None:
        """Before folding ``t``: the days skipped since the last one folded are folded
        too, or, when they are many and not all within a year of ``t``, the head and
        histograms are rebuilt as of ``t - 1`` from the days with data before ``t``
        whose ages are under ``LONG_AGO`` (none of them rebuilt now: ``t`` would not be
        past a skipped day otherwise)."""
        skipped, self.skipped = self.skipped, []
        if not skipped:
            return
        present = self.present
        window = present[
            bisect.bisect_right(present, t - LONG_AGO) : bisect.bisect_left(present, t)
        ]
        if len(window) >= len(skipped) or set(window) & set(self.changed):
            for u in skipped:
                self._fold(self.update._load_day(u), first, resume=False)
            return
        self.close()
        head = Head.from_days((self.update._load_day(u) for u in window), len(first))
        head.advance(t - 1)
        self.head = head
        self.counter = SpanCounter.from_head(head, first, self.update.app.value_sizes())

    def fold_until(self, end: int, first: IntArray) -> None:
        """Fold the days before ``end`` not folded yet, from their files (those no change
        reaches are skipped)."""
        while self.todo and self.todo[0] < end:
            t = self.todo[0]
            if self.reached(t):
                self._fold(self.update._load_day(t), first)
            else:
                self.todo.pop(0)
                self.skipped.append(t)

    def fold(self, part: DayPart, first: IntArray) -> None:
        """Fold ``part``: the next day, or another slice of the day folded last (its users
        not in the slices before)."""
        if part.day == self.open:
            uid = part.uid.astype(np.intp)
            self.counter.regrow(self.head, part, first, first[uid] < part.day)
            return
        if not self.todo or self.todo[0] != part.day:
            raise ValueError(f"day {part.day} out of order")
        self._fold(part, first)

    def _fold(self, part: DayPart, first: IntArray, resume: bool = True) -> None:
        if resume:  # (a skipped day folded by _resume is off the to-do list already)
            self._resume(part.day, first)
            self.todo.pop(0)
        self.close()
        self.counter.fold(self.head, part, first, applied=self._head_saver(part))
        self.open = part.day

    def _head_saver(self, part: DayPart) -> Callable[[], None] | None:
        """For the last day to fold, complete and kept: have the writer save the head as
        soon as the day is applied to it, while the histograms count its users in."""
        write = self.write
        if write is None or self.todo or part.more or part.day not in self.keep:
            return None
        head, path = self.head, self._head_path(part.day)

        def save() -> None:
            write(lambda: head.save(path))
            self.head_saved = part.day

        return save

    def _head_path(self, t: int) -> Path:
        (self.update.dir / "heads").mkdir(exist_ok=True)
        return self.update.dir / self.update._names(day_date(t).isoformat()).head

    def close(self) -> None:
        """Save the span histograms (and head) of the day folded last, once complete."""
        if self.open is None:
            return
        update, t = self.update, self.open
        self.open = None
        day = day_date(t).isoformat()
        update.app.spans[day] = update._names(day).spans
        self.counter.save(update.dir / update.app.spans[day])
        if t in self.keep:
            self.heads[day] = update._names(day).head
            if self.head_saved != t:
                self.head.save(self._head_path(t))
