"""Folding the newest day's overlay into its files off the flushes' path (docs/performance.md).

A flush writes the users it changed to the newest day's overlay (``overlay.py``). Folding
the overlay into the day's files costs the day and the app's users, not a batch, so the
server's folder thread does it beside the flusher (``OverlayFolder``), in two steps:

1. ``Fold.of`` and ``Fold.build``, without the writer lock: read the manifest, link the
   files it names for the day (the snapshot) into ``state/_fold/`` (outside the app
   directories, so a flush's ``publish`` neither sees nor removes them) and write the day's
   files with the overlay folded in there; the server's folder builds in a child process
   at low priority, so the fold neither takes the GIL from the flusher nor leaves its
   memory in the server. Flushes go on meanwhile.
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

import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from userportrait.store.durable import fsync_path
from userportrait.store.lake import Lake, try_lock
from userportrait.store.state.days import day_number
from userportrait.store.state.manifest import AppState, Manifest, app_dir, publish
from userportrait.store.state.overlay import OVERLAY_USERS, FoldNames, Overlay, write_folded

log = logging.getLogger("userportrait.state")

#: Where folds write their files before they are moved in (under ``state/``).
FOLD_DIR = "_fold"
#: Seconds the folder waits after a failed fold before it tries again.
RETRY_S = 60.0
#: The nice value of a fold's child process: the lowest, as a fold has slack (the overlay may
#: grow to OVERLAY_USERS_MAX meanwhile) and on 2 shared cores the flushes come first.
FOLDER_NICE = 19


@dataclass(slots=True)
class Fold:
    """One app's overlay folded into new day files from a snapshot, then swapped in.

    ``staged`` holds ``snapshot.json`` (the app's manifest entry), ``in/`` (hard links to
    the snapshot's files: no publish removes them from under the fold) and ``out/`` (the
    folded files)."""

    lake: Lake
    appid: str
    snapshot: AppState
    staged: Path
    names: FoldNames  # relative to ``staged / "out"``

    @classmethod
    def of(cls, lake: Lake, appid: str, app: AppState) -> Fold:
        """A fold of ``app`` (the manifest's entry of ``appid``, with an overlay), its files
        linked in; the caller holds ``folding``."""
        ((day, name),) = app.overlay.items()
        staged = lake.state_dir / FOLD_DIR / f"appid={appid}"
        shutil.rmtree(staged, ignore_errors=True)  # a crashed fold's
        src = app_dir(lake.state_dir, appid)
        assert app.first_day is not None
        for rel in (app.days[day], app.keys[day], app.heads[day], app.first_day, name):
            (staged / "in" / rel).parent.mkdir(parents=True, exist_ok=True)
            _link(src / rel, staged / "in" / rel)
        (staged / "snapshot.json").write_text(Manifest(app.version, {appid: app}).to_json())
        return cls(lake, appid, app, staged, FoldNames(day, "staged"))

    @classmethod
    def prepare(cls, lake: Lake, appid: str, app: AppState) -> Fold:
        """``of`` and ``build``: a fold ready to swap."""
        fold = cls.of(lake, appid, app)
        fold.build()
        return fold

    def build(self) -> None:
        """Write the folded files (in this process)."""
        build(self.staged)

    def build_apart(self) -> None:
        """Write the folded files in a child process at nice ``FOLDER_NICE``: the fold
        holds neither this process's GIL (the flusher's) nor its memory afterwards."""
        cmd = [sys.executable, "-m", "userportrait.store.state.folding", str(self.staged)]
        # The child imports this very package, installed or not.
        here = str(Path(__file__).resolve().parents[3])
        path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, "PYTHONPATH": path}
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if done.returncode:
            raise RuntimeError(f"the fold of {self.appid} failed: {done.stderr[-2000:]}")

    def _overlay(self) -> Overlay:
        ((day, name),) = self.snapshot.overlay.items()
        return Overlay.load(self.staged / "in" / name, day_number(day))

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
            (self.staged / "out" / staged).replace(dst / final)
        for d in {(dst / f).parent for f in names.files()}:
            fsync_path(d)
        now = Overlay.load(dst / app.overlay[day], day_number(day))
        snapshot = self._overlay()
        rest = now.since(snapshot)
        new = app.copy()
        names.set(new)
        if len(rest):
            new.overlay = {day: names.overlay}
            rest.save(dst / new.overlay[day])
        apps = {**current.apps, self.appid: new}
        publish(self.lake.state_dir, current, Manifest(current.version, apps, current.failed))
        log.info(
            "folded the overlay of %s (%d users) into new files of %s; %d users left over",
            self.appid, len(snapshot), day, len(rest),
        )  # fmt: skip


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except FileNotFoundError:
        raise
    except OSError:  # a file system without hard links: a copy does the same, slower
        shutil.copyfile(src, dst)


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
    with try_lock(base / "fold.lock") as mine:
        yield mine


def fold_overlays(lake: Lake, limit: int = OVERLAY_USERS, apart: bool = False) -> list[str]:
    """Fold every app's overlay of more than ``limit`` users (``apart``: each built in a
    child process); returns the apps folded."""
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
                fold = Fold.of(lake, appid, app)
            except FileNotFoundError:  # a writer replaced the snapshot's files: next time
                continue
            if apart:
                fold.build_apart()
            else:
                fold.build()
            if fold.swap():
                done.append(appid)
    return done


class OverlayFolder:
    """The server's folder: a thread that folds overlays past ``limit`` users when poked
    (by the live flusher after each flush), each built in a child process."""

    def __init__(self, lake: Lake, limit: int = OVERLAY_USERS) -> None:
        self.lake = lake
        self.limit = limit
        #: (start, end) of each pass that folded something (``time.perf_counter``).
        self.folds: list[tuple[float, float]] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_try = 0.0  # after a failure: not before (time.monotonic)

    def start(self) -> None:
        self._stop.clear()
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
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stop.is_set():
                return
            if time.monotonic() < self._next_try:
                continue
            t = time.perf_counter()
            try:
                if fold_overlays(self.lake, self.limit, apart=True):
                    self.folds.append((t, time.perf_counter()))
            except Exception:  # the flushes fold it themselves past OVERLAY_USERS_MAX
                self._next_try = time.monotonic() + RETRY_S
                log.exception("folding an overlay failed; retrying in %.0f s", RETRY_S)


def build(staged: Path) -> None:
    """Write the folded files of the fold staged in ``staged`` (``Fold``)."""
    ((_, app),) = Manifest.from_json((staged / "snapshot.json").read_text()).apps.items()
    ((day, name),) = app.overlay.items()
    overlay = Overlay.load(staged / "in" / name, day_number(day))
    write_folded(staged / "in", app, overlay, staged / "out", FoldNames(day, "staged"))


if __name__ == "__main__":  # Fold.build_apart
    os.nice(FOLDER_NICE)
    build(Path(sys.argv[1]))
