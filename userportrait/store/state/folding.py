"""Folding the newest day's overlay into its files off the flushes' path (issue 14).

A flush writes the users it changed to the newest day's overlay (``overlay.py``). Folding
the overlay into the day's files costs the day and the app's users, not a batch, so the
server's folder thread does it beside the flusher (``OverlayFolder``), in two steps:

1. ``Fold.prepare``, without the writer lock: read the manifest, load the overlay it names
   (the snapshot) and write the day's files with it folded in to ``state/_fold/`` (outside
   the app directories: a flush's ``publish`` keeps it); flushes go on meanwhile.
2. ``Fold.swap``, under the writer lock: if the day's files are still the snapshot's (only
   flushes came since), move the folded files in and keep as the overlay only the rows
   flushes changed since the snapshot (``Overlay.since``: a cost of the overlay, not of the
   day), then publish. Otherwise (a new day, late events: those fold the overlay themselves
   first) the fold is dropped.

Answers do not change (the day's files with the overlay on top are the same either way),
so the manifest keeps its catalog version. A crash at any point leaves the old manifest
(moved-in files that it does not name are removed by the next publish; ``state/_fold/`` is
cleared by the next fold) or the new one, and a reader holding the old one keeps its files
until the next publish, as after any update.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from userportrait.store.durable import fsync_path
from userportrait.store.lake import Lake
from userportrait.store.state.days import day_number
from userportrait.store.state.manifest import AppState, Manifest
from userportrait.store.state.overlay import OVERLAY_USERS, FoldNames, Overlay, write_folded
from userportrait.store.state.update import app_dir, publish

log = logging.getLogger("userportrait.state")

#: Where folds write their files before they are moved in (under ``state/``).
FOLD_DIR = "_fold"
#: The folder thread's nice value: on 2 shared cores the flushes come first (on Linux the
#: nice value of a thread id is that thread's own).
FOLDER_NICE = 10


@dataclass(slots=True)
class Fold:
    """One app's overlay folded into new day files from a snapshot, waiting for the swap."""

    lake: Lake
    appid: str
    snapshot: AppState
    overlay: Overlay
    staged: Path
    names: FoldNames  # relative to ``staged``

    @classmethod
    def prepare(cls, lake: Lake, appid: str, app: AppState) -> Fold:
        """Write the folded files of ``app`` (the manifest's entry of ``appid``, with an
        overlay) to the staging directory; the caller holds ``folding``."""
        ((day, name),) = app.overlay.items()
        src = app_dir(lake.state_dir, appid)
        overlay = Overlay.load(src / name, day_number(day))  # before a flush replaces it
        staged = lake.state_dir / FOLD_DIR / f"appid={appid}"
        shutil.rmtree(staged, ignore_errors=True)  # a crashed fold's
        names = FoldNames(day, "staged")
        write_folded(src, app, overlay, staged, names)
        return cls(lake, appid, app, overlay, staged, names)

    def swap(self) -> bool:
        """Move the folded files in and publish; False (nothing changed) when the day's
        files are no longer the snapshot's."""
        root = self.lake.state_dir
        try:
            with self.lake.write_lock():
                current = Manifest.read(root)
                app = current.apps.get(self.appid)
                if app is None or self.appid in current.failed or not self._same_day(app):
                    return False
                self._swap(current, app)
                return True
        finally:
            shutil.rmtree(self.staged, ignore_errors=True)

    def _same_day(self, app: AppState) -> bool:
        """Only flushes of the snapshot's newest day came since: they change its overlay
        (and span histograms), never its files."""
        old, day = self.snapshot, self.names.day
        return (
            set(app.overlay) == {day}
            and app.days.get(day) == old.days[day]
            and app.keys == old.keys
            and app.heads.get(day) == old.heads[day]
            and app.first_day == old.first_day
        )

    def _swap(self, current: Manifest, app: AppState) -> None:
        day = self.names.day
        dst = app_dir(self.lake.state_dir, self.appid)
        names = _free_names(dst, day, f"b{current.version}.fold")
        for staged, final in zip(self.names.files(), names.files(), strict=True):
            (self.staged / staged).replace(dst / final)
        for d in {(dst / f).parent for f in names.files()}:
            fsync_path(d)
        now = Overlay.load(dst / app.overlay[day], day_number(day))
        rest = now.since(self.overlay)
        new = app.copy()
        names.set(new)
        if len(rest):
            new.overlay = {day: names.overlay}
            rest.save(dst / new.overlay[day])
        apps = {**current.apps, self.appid: new}
        publish(self.lake.state_dir, current, Manifest(current.version, apps, current.failed))
        log.info(
            "folded the overlay of %s (%d users) into new files of %s; %d users left over",
            self.appid, len(self.overlay), day, len(rest),
        )  # fmt: skip


def _free_names(dst: Path, day: str, tag: str) -> FoldNames:
    """Names for a fold's files that no file in ``dst`` has (two folds at one version)."""
    k = 1
    while True:
        names = FoldNames(day, tag if k == 1 else f"{tag}{k}")
        if not any((dst / f).exists() for f in (*names.files(), names.overlay)):
            return names
        k += 1


@contextmanager
def folding(lake: Lake) -> Iterator[bool]:
    """The folds' own lock (not the writers'): True if no other fold of this data
    directory is at work, which then owns ``state/_fold/``."""
    base = lake.state_dir / FOLD_DIR
    base.mkdir(parents=True, exist_ok=True)
    with open(base / "fold.lock", "a+b") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def fold_overlays(lake: Lake, limit: int = OVERLAY_USERS) -> list[str]:
    """Fold every app's overlay of more than ``limit`` users; returns the apps folded."""
    done: list[str] = []
    with folding(lake) as mine:
        if not mine:
            return done
        manifest = Manifest.read(lake.state_dir)
        for appid, app in sorted(manifest.apps.items()):
            if not app.overlay or appid in manifest.failed:
                continue
            try:
                (name,) = app.overlay.values()
                if Overlay.users(app_dir(lake.state_dir, appid) / name) <= limit:
                    continue
                fold = Fold.prepare(lake, appid, app)
            except FileNotFoundError:  # a writer replaced the snapshot's files: next time
                continue
            if fold.swap():
                done.append(appid)
    return done


class OverlayFolder:
    """The server's folder: a thread that folds overlays past ``limit`` users when poked
    (by the live flusher after each flush)."""

    def __init__(self, lake: Lake, limit: int = OVERLAY_USERS) -> None:
        self.lake = lake
        self.limit = limit
        self.seconds: list[float] = []  # the duration of each pass that folded something
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="state-folder", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Stop after the fold at work, if any."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _loop(self) -> None:
        if sys.platform.startswith("linux"):  # elsewhere a thread id is no process id
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), FOLDER_NICE)
            except OSError:  # not permitted: it folds at the flushes' priority
                pass
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stop.is_set():
                return
            t = time.perf_counter()
            try:
                if fold_overlays(self.lake, self.limit):
                    self.seconds.append(time.perf_counter() - t)
            except Exception:  # the flushes fold it themselves past OVERLAY_USERS_MAX
                log.exception("folding an overlay failed; the next flush retries")
