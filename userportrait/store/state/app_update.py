"""One app's update: its touched days rebuilt from the lake, its end days replayed.

Per touched appid the touched days are rebuilt from the lake (``partitions.py``, or Spark
through ``DayPartitions``) and written by a thread beside the folding; the span histograms
and head of the end days a change can reach are replayed day by day as the days come
(``replay.py``). More events for the newest day only (a live flush) go through its overlay
instead (``overlay.py``): a flush costs its batch, not its day. Which apps are updated, in
which order, and what a failure does: ``catching_up.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import numpy as np

from userportrait.portrait.dims import DIMS
from userportrait.sqltext import sql_str
from userportrait.store.durable import atomic_write
from userportrait.store.lake import Lake
from userportrait.store.retention import first_seen_relation
from userportrait.store.state.batch import Built, Ready
from userportrait.store.state.days import (
    day_date,
    day_number,
    load_day,
    merge_winners,
    rows_of,
    save_day,
    save_keys,
)
from userportrait.store.state.head import Head
from userportrait.store.state.manifest import AppState, app_dir
from userportrait.store.state.overlay import OVERLAY_USERS_MAX, FoldNames, Overlay, write_folded
from userportrait.store.state.partitions import PartitionBuilder
from userportrait.store.state.prefetch import Prefetched
from userportrait.store.state.replay import FileWrite, Replay
from userportrait.store.state.spans import SpanCounter
from userportrait.store.windows import NO_DAY, DayPart, IntArray

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


#: (lake, appid, app state to extend, app directory, catalog version) -> a builder.
PartitionSource = Callable[[Lake, str, AppState, Path, int], DayPartitions]


def no_progress(_desc: str, _frac: float) -> None:
    pass


class AppUpdate:
    """Applies the touched days of one appid at catalog version ``version``."""

    def __init__(
        self,
        lake: Lake,
        appid: str,
        old: AppState,
        version: int,
        partitions: PartitionSource = PartitionBuilder,
        prebuilt: Built | None = None,
    ) -> None:
        self.lake = lake
        self.partitions = partitions
        #: This app's share of a pass over many small apps (``batch.py``), if one ran.
        self.prebuilt = prebuilt
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
        if self.grows_newest(days):
            self._grow_newest(day_number(next(iter(days))), progress)
            progress("up to date", 1.0)
            return self.app
        self._fold_overlay()
        first = (
            np.load(self.dir / self.app.first_day) if self.app.first_day else np.empty(0, np.int32)
        )
        if self.app.n_users == 0:  # a state built anew: the users an expiry remembers first
            first = self._kept_users()
        newest = max(day_number(d) for d in set(self.app.days) | days)
        self.app.keys = {d: f for d, f in self.app.keys.items() if day_number(d) == newest}
        t0 = min(day_number(d) for d in days)
        present = sorted({day_number(d) for d in self.app.days} | {day_number(d) for d in days})
        with self._builder(self.partitions) as parts:
            progress("building days", 0.0)
            n_before = self.app.n_users  # the builder's thread extends the dictionary
            built = parts.build(sorted(days), keyed=day_date(newest).isoformat())
            # The builder runs a chunk ahead in a thread: DuckDB counts the next days while
            # numpy folds these (they would otherwise take turns on the cores), and the
            # histograms as of the day before t0 are loaded meanwhile. The stream is closed
            # before the builder: its thread must stop before the connection does.
            with Prefetched(built) as stream, self._writer() as write:
                replay = Replay.start(self, t0, present, first, n_before)
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
        self.app.days[day] = self.names(day).days
        path = self.dir / self.app.days[day]
        write(lambda: save_day(path, part))
        self._note_sizes(part)
        if part.day == newest and part.keys is not None:
            self.app.keys = {day: self.names(day).keys}
            keys = self.dir / self.app.keys[day]
            write(lambda: save_keys(keys, part))
        elif part.day == newest:  # a builder without times (Spark): no merging
            self.app.keys = {}

    def grows_newest(self, days: set[str]) -> bool:
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
        with self._flush_builder() as parts:
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
        self.app.spans[day] = self.names(day).spans
        counter.save(self.dir / self.app.spans[day])
        overlay = overlay.updated(delta, head)
        self.app.overlay = {day: self.names(day).overlay}
        overlay.save(self.dir / self.app.overlay[day])
        if len(overlay) > OVERLAY_USERS_MAX:
            self._fold_overlay()

    def _builder(self, partitions: PartitionSource) -> DayPartitions:
        """``partitions``' builder for this app, or the prebuilt share of a group pass."""
        if self.prebuilt is not None:
            return Ready(self.prebuilt, self.app, self.dir, self.version)
        return partitions(self.lake, self.appid, self.app, self.dir, self.version)

    def _flush_builder(self) -> PartitionBuilder | Ready:
        """The builder of a live flush's batches (they alone: ``build(after=…)``)."""
        if self.prebuilt is not None:
            return Ready(self.prebuilt, self.app, self.dir, self.version)
        return PartitionBuilder(self.lake, self.appid, self.app, self.dir, self.version)

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
        names = self.names(day)
        write_folded(self.dir, self.app, overlay, self.dir, names)
        names.set(self.app)

    def _kept_users(self) -> IntArray:
        """Put the users of the app's first-seen file (``store/expire.py``: first seen
        before its retention cut) into the new dictionary; their first days.

        A state built after an expiry must not take a user's first day from the events
        left: these users come first, with the first days the expiry kept, so that a
        user seen again later is never taken for new (as in the state the expiry found)."""
        kept = self.lake.catalog.retention_of(self.appid)
        if kept is None or kept.first_seen is None:
            return np.empty(0, np.int32)
        part = f"users/u{self.version}_0.parquet"
        con = self.lake.connect()
        try:
            con.execute(
                "CREATE OR REPLACE TEMP TABLE kept AS SELECT openid, "
                "CAST(row_number() OVER (ORDER BY first_day, openid) - 1 AS UINTEGER) AS uid, "
                "CAST(first_day - DATE '1970-01-01' AS INTEGER) AS first "
                f"FROM {first_seen_relation(self.lake, kept.first_seen)}"
            )
            first = con.execute("SELECT first FROM kept ORDER BY uid").fetchnumpy()["first"]
            if len(first):
                con.execute(
                    "COPY (SELECT openid, uid FROM kept) TO "
                    f"{sql_str(str(self.dir / part))} (FORMAT parquet, COMPRESSION zstd)"
                )
        finally:
            con.close()
        if not len(first):
            return np.empty(0, np.int32)
        self.app.users.append(part)
        self.app.n_users = len(first)
        return np.asarray(first, np.int32)

    def _grown(self, first: IntArray) -> IntArray:
        """``first`` with NO_DAY for the users the dictionary gained since it was read."""
        missing = self.app.n_users - len(first)
        return np.concatenate([first, np.full(missing, NO_DAY, np.int32)]) if missing > 0 else first

    def names(self, day: str) -> FoldNames:
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

    def stored_day(self, t: int) -> DayPart:
        """Day ``t``'s partition as its file holds it (for the replay)."""
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
