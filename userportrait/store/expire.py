"""Expiry: an app's lake partitions before a day dropped, its users' first days kept.

``expire(lake, before)`` removes every lake file of the days before ``before`` (of one app,
or all) and moves the app's retention cut there (``Catalog.expire_files``, one
transaction with the files' removal; the dropped files are deleted once it commits).
What "new" means afterwards (docs/semantics.md, "After an expiry"): a user's first day is
still the first day of all the data the app ever had, so a window on or after the cut
answers exactly as before the expiry, and a window that starts before the cut is refused
(``retention.check_window``). For that the expiry keeps, per app, the first day of every user first
seen before the cut: ``first_seen/appid=A/first_seen.bN.parquet`` (openid, first_day),
which every engine reads (``retention.first_seen_sql``); the incremental state never forgets a first
day it has (the expiry touches no day), and a state rebuilt from the lake seeds its new
users' first days from the same file.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from userportrait.portrait.query import TZ
from userportrait.sqltext import sql_list, sql_str
from userportrait.store.catalog import LakeFile, Retention
from userportrait.store.durable import fsync_tree
from userportrait.store.lake import Lake
from userportrait.store.retention import first_seen_relation
from userportrait.store.state import catch_up, update_state

log = logging.getLogger("userportrait.expire")

#: The source of an expiry's batch in the ingest log.
EXPIRY_SOURCE = "expiry of "


@dataclass(slots=True)
class ExpireReport:
    before: dt.date
    apps: dict[str, int] = field(default_factory=dict)  # appid -> files dropped
    files: int = 0
    rows: int = 0
    users_kept: int = 0  # rows of the first-seen files written (users first seen before)
    batches: list[int] = field(default_factory=list)


def expire(lake: Lake, before: dt.date, appid: str | None = None) -> ExpireReport:
    """Drop the events before ``before`` (of ``appid``, or of every app) and set the
    apps' retention cut there; a cut never moves back (an earlier ``before`` is a no-op)."""
    report = ExpireReport(before)
    cut = before.isoformat()
    with lake.write_lock():
        lake.collect_garbage_locked()
        apps = [appid] if appid is not None else lake.catalog.appids()
        kept = lake.catalog.retention()
        todo = [a for a in apps if a not in kept or kept[a].first_kept < cut]
        if todo:
            # The expiry touches no day, so the state must hold every batch whose files
            # go before they go (as compaction does); if that fails, nothing is expired.
            catch_up(lake)
        for app in todo:
            _expire_app(lake, app, cut, kept.get(app), report)
    if report.batches:
        update_state(lake)
    return report


def _expire_app(
    lake: Lake, appid: str, cut: str, old: Retention | None, report: ExpireReport
) -> None:
    files = [f for f in lake.files(appid) if f.day < cut]
    batch_id = lake.catalog.next_batch_id()
    first_seen = old.first_seen if old else None
    users = 0
    if files:
        first_seen, users = _write_first_seen(lake, appid, files, old, batch_id)
    lake.catalog.expire_files(
        batch_id,
        f"{EXPIRY_SOURCE}appid={appid} before {cut} ({len(files)} files)",
        appid,
        Retention(cut, first_seen),
        [f.path for f in files],
    )
    # Committed: the dropped files are deleted now, not after a grace period (a reader
    # that listed them a moment ago fails and asks again; the data must go).
    for f in files:
        (lake.root / f.path).unlink(missing_ok=True)
        _remove_if_empty((lake.root / f.path).parent)
    if old and old.first_seen and old.first_seen != first_seen:
        (lake.root / old.first_seen).unlink(missing_ok=True)
    report.apps[appid] = len(files)
    report.files += len(files)
    report.rows += sum(f.rows for f in files)
    report.users_kept += users
    report.batches.append(batch_id)
    (log.info if files else log.debug)(
        "expired %d files (%d events) of %s before %s; %d users' first days kept",
        len(files),
        sum(f.rows for f in files),
        appid,
        cut,
        users,
    )


def _write_first_seen(
    lake: Lake, appid: str, files: list[LakeFile], old: Retention | None, batch_id: int
) -> tuple[str, int]:
    """The app's new first-seen file: per user the earliest of its old first day and the
    days of the dropped files; (its path, its rows)."""
    rel = f"first_seen/appid={appid}/first_seen.b{batch_id}.parquet"
    staging = lake.staging_dir / f"first-seen-{batch_id}-{uuid.uuid4().hex[:8]}.parquet"
    staging.parent.mkdir(parents=True, exist_ok=True)
    by_day: dict[str, list[str]] = {}
    for f in files:
        by_day.setdefault(f.day, []).append(str(lake.root / f.path))
    parts = [
        f"SELECT DISTINCT openid, DATE {sql_str(day)} AS first_day "
        f"FROM read_parquet({sql_list(paths)}, hive_partitioning=false)"
        for day, paths in by_day.items()
    ]
    if old and old.first_seen:
        parts.append(f"SELECT openid, first_day FROM {first_seen_relation(lake, old.first_seen)}")
    con = lake.connect()
    try:
        con.execute(
            "COPY (SELECT openid, min(first_day) AS first_day FROM ("
            + " UNION ALL ".join(parts)
            + f") GROUP BY openid ORDER BY openid) TO {sql_str(str(staging))} "
            "(FORMAT parquet, COMPRESSION zstd)"
        )
        row = con.execute(f"SELECT count(*) FROM read_parquet({sql_str(str(staging))})").fetchone()
    finally:
        con.close()
    target = lake.root / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    staging.replace(target)
    fsync_tree([target], lake.root)
    return rel, int(row[0]) if row else 0


def _remove_if_empty(directory: Path) -> None:
    try:
        if directory.is_dir() and not any(directory.iterdir()):
            shutil.rmtree(directory)
    except OSError:
        pass


#: How often ``serve`` applies ``USERPORTRAIT_RETENTION_DAYS`` (seconds).
RETENTION_INTERVAL_S = 24 * 3600.0


def shanghai_today() -> dt.date:
    return dt.datetime.now(TZ).date()


def retention_cut(days: int, today: dt.date) -> dt.date:
    """The first day ``days`` of retention keep: today and the ``days`` days before it
    (30 keeps WeChat's 30-day window ending yesterday answering)."""
    return today - dt.timedelta(days=days)


async def retention_loop(lake: Lake, days: int) -> None:
    """``serve``'s retention: expire every app's days before ``retention_cut`` now and
    every ``RETENTION_INTERVAL_S``, in a thread (an expiry waits for the writer lock)."""
    log.warning(
        "retention: events older than %d days are deleted (first kept day %s), now and "
        "every %g hours; windows before it are refused (USERPORTRAIT_RETENTION_DAYS)",
        days,
        retention_cut(days, shanghai_today()).strftime("%Y%m%d"),
        RETENTION_INTERVAL_S / 3600,
    )
    while True:
        try:
            cut = retention_cut(days, shanghai_today())
            report = await asyncio.to_thread(expire, lake, cut)
            (log.info if report.files else log.debug)(
                "retention: %d files (%d events) before %s expired",
                report.files,
                report.rows,
                cut.strftime("%Y%m%d"),
            )
        except Exception:  # a busy disk must not end retention: the next round retries
            log.exception("retention round failed")
        await asyncio.sleep(RETENTION_INTERVAL_S)
