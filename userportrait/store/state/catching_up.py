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

from userportrait.store.lake import Lake
from userportrait.store.state.app_update import AppUpdate, PartitionSource, Progress, no_progress
from userportrait.store.state.manifest import AppState, Failure, Manifest, publish
from userportrait.store.state.partitions import PartitionBuilder

log = logging.getLogger("userportrait.state")


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
    # does not hold back the others' answers (docs/ingest.md, durability step 6). The
    # manifest keeps the old catalog version until every app is done (a crash redoes them
    # all), and no file is removed before then (every manifest in between names files of
    # old or new).
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
