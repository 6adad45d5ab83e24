"""Catching up: every app behind the catalog updated, fewest days first, then published.

The catalog says which (appid, day) pairs the batches the state has not seen touched; each
app's days are applied by an ``AppUpdate`` (``app_update.py``), the apps with the fewest
days first, and a manifest naming what is done is published before an app with more.
Apps are updated one at a time; a failed app is recorded in the manifest and retried with
back-off (``manifest.Failure``), and never holds back the others.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import time
from pathlib import Path

from userportrait.store.lake import Lake
from userportrait.store.state.app_update import AppUpdate, PartitionSource, Progress, no_progress
from userportrait.store.state.batch import Batches, Work, small_apps
from userportrait.store.state.manifest import AppState, Failure, Manifest, app_dir, publish
from userportrait.store.state.partitions import PartitionBuilder

log = logging.getLogger("userportrait.state")

#: Among apps of as many days, the manifest is published at most this often.
PUBLISH_EVERY_S = 2.0


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
    # A forget (``store/forget.py``) removed users: the app's dictionaries and every
    # file of its state are built again from the lake, now without them (their uids,
    # openids and first days must go, which the incremental path never drops).
    rebuilt = lake.catalog.forgotten_apps(manifest.version, version)
    for appid in rebuilt:
        new.apps.pop(appid, None)
        new.failed.pop(appid, None)
        touched[appid] = {f.day for f in lake.catalog.files(appid, upto=version)}
        if not touched[appid]:
            del touched[appid]
    # The apps with the fewest touched days first (a live flush: one), and what is done
    # is published before an app with more: one app's long update (thousands of days)
    # does not hold back the others' answers (docs/ingest.md, durability step 6). The
    # manifest keeps the old catalog version until every app is done (a crash redoes them
    # all), and no file is removed before then (every manifest in between names files of
    # old or new).
    order = sorted(touched.items(), key=lambda item: (len(item[1]), item[0]))
    olds = {
        appid: AppState() if appid in rebuilt else manifest.apps.get(appid, AppState())
        for appid, _days in order
    }
    batches = _batches(lake, version, order, olds) if partitions is PartitionBuilder else None
    unpublished = False
    published_at = time.monotonic()
    for k, (appid, days) in enumerate(order):
        old = olds[appid]
        # Published before an app with more days than the last (the fewer-days apps are
        # done), and at most every PUBLISH_EVERY_S among apps of equal days: a manifest
        # per app would cost its whole text per app (quadratic in the apps, issue 30).
        more = k > 0 and len(days) > len(order[k - 1][1])
        if (
            unpublished
            and len(days) > 1
            and (more or time.monotonic() - published_at >= PUBLISH_EVERY_S)
        ):
            Manifest(manifest.version, dict(new.apps), dict(new.failed)).write(root)
            unpublished = False
            published_at = time.monotonic()
        prebuilt = batches.take(appid) if batches is not None else None

        def one_of_all(desc: str, frac: float, k: int = k) -> None:
            progress(desc, (k + frac) / len(touched))

        try:
            new.apps[appid] = AppUpdate(lake, appid, old, version, partitions, prebuilt).apply(
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
    expired = _drop_expired(lake, new)
    publish(root, manifest, new)
    for appid in rebuilt:  # the old files hold forgotten users: not kept for readers
        drop_unlisted(app_dir(root, appid), new.apps.get(appid))
    for path in expired:
        path.unlink(missing_ok=True)
    return new


def _batches(
    lake: Lake, version: int, order: list[tuple[str, set[str]]], olds: dict[str, AppState]
) -> Batches | None:
    """The small apps of this catch-up, to be built many in one pass (``batch.py``); a
    live flush's apps (the newest day's overlay) with their new batches only. Not a state
    built anew after an expiry (it starts from the app's first-seen file)."""
    cut = lake.catalog.retention()
    candidates: dict[str, Work] = {}
    for appid, days in order:
        old = olds[appid]
        if appid in cut and old.n_users == 0:
            continue
        flush = AppUpdate(lake, appid, old, version).grows_newest(days)
        candidates[appid] = Work(old, days, old.version if flush else None)
    if len(candidates) < 2:
        return None
    work = small_apps(lake, version, candidates)
    return Batches(lake, version, [a for a, _ in order], work) if len(work) > 1 else None


def _drop_expired(lake: Lake, manifest: Manifest) -> list[Path]:
    """Take the files of the days before each app's retention cut out of ``manifest``
    (``store/expire.py``: a window that starts before it is refused, so no answer reads
    them); the paths to delete once it is published. The users' first days stay (kept
    first days: nobody back after the cut is new), and so do the dictionaries."""
    cuts = lake.catalog.retention()
    gone: list[Path] = []
    for appid, app in manifest.apps.items():
        cut = cuts[appid].first_kept if appid in cuts else None
        if cut is None or not any(day < cut for day in app.days):
            continue
        kept = app.copy()
        files = len(gone)
        for kind in (kept.days, kept.spans, kept.heads, kept.keys, kept.overlay):
            for day in [d for d in kind if d < cut]:
                gone.append(app_dir(lake.state_dir, appid) / kind.pop(day))
        manifest.apps[appid] = kept
        log.info("state of %s: %d files of days before %s dropped", appid, len(gone) - files, cut)
    return gone


def drop_unlisted(directory: Path, app: AppState | None) -> None:
    """Delete every file of an app's directory that ``app`` does not name (all of them
    for None): after a forget, the previous state's files must not wait for readers."""
    keep = {directory / f for f in app.files()} if app is not None else set()
    for path in sorted(directory.glob("**/*"), reverse=True):
        if path.is_file() and path not in keep:
            path.unlink(missing_ok=True)
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    if app is None and directory.exists() and not any(directory.iterdir()):
        directory.rmdir()


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
