"""Compaction: merge the many small files of a lake partition into one.

Every batch writes one file per (appid, day) it touches, so a server flushing live events
every couple of seconds leaves thousands of small files in today's partition, and every
reader of that day (the state build, the ``sql`` engine, DuckDB or Spark users of the lake)
pays per file. Compaction rewrites such a partition into one file holding exactly the same
rows (each keeps its ``batch_id``) and swaps them in the catalog in one transaction, as a
batch of its own. The old files stay on disk for a grace period, because a reader may have
listed them just before the swap; a later compaction deletes them.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import pyarrow.parquet as pq

from userportrait.sqltext import sql_str
from userportrait.store.catalog import COMPACTION_SOURCE, LakeFile
from userportrait.store.durable import fsync_tree
from userportrait.store.lake import Lake
from userportrait.store.state import catch_up, update_state

#: Partitions with at least this many small files are compacted.
MIN_FILES = 16
#: Files of this many rows or more are left as they are: a compaction rewrites only the
#: small files, so its cost stays bounded however many events today already holds (the
#: merged file of a busy day's flushes grows into a large one and is left alone).
LARGE_ROWS = 1 << 20
#: Seconds a retired file is kept for readers that listed it before the swap.
GRACE_S = 600.0


@dataclass(slots=True)
class CompactReport:
    partitions: int = 0  # (appid, day) partitions rewritten
    files_merged: int = 0
    rows: int = 0
    deleted: int = 0  # retired files deleted after their grace period
    batches: list[int] = field(default_factory=list)


def compact(
    lake: Lake,
    appid: str | None = None,
    min_files: int = MIN_FILES,
    grace_s: float = GRACE_S,
) -> CompactReport:
    """Compact every partition (of ``appid``, or all) with at least ``min_files`` files."""
    report = CompactReport()
    with lake.write_lock():
        report.deleted = _delete_retired(lake, time.time() - grace_s)
        lake.collect_garbage_locked()
        todo = [
            (app, day)
            for app, day, _count in lake.catalog.day_file_counts(max(2, min_files), LARGE_ROWS)
            if appid is None or app == appid
        ]
        if todo:
            # The derived state skips compactions (they change files, never events), so
            # it must reflect every batch whose files are swapped out: bring it up to date
            # under this lock first; if that fails, nothing is compacted.
            catch_up(lake)
        for app, day in todo:
            _compact_partition(lake, app, day, report)
    if report.batches:
        update_state(lake)
    return report


def _compact_partition(lake: Lake, appid: str, day: str, report: CompactReport) -> None:
    files = [f for f in lake.files(appid) if f.day == day and f.rows < LARGE_ROWS]
    batch_id = lake.catalog.next_batch_id()
    rel = f"events/appid={appid}/day={day}/c{batch_id}_{uuid.uuid4().hex[:8]}.parquet"
    staging = lake.staging_dir / f"compact-{batch_id}.parquet"
    staging.parent.mkdir(parents=True, exist_ok=True)
    listing = "[" + ", ".join(sql_str(str(lake.root / f.path)) for f in files) + "]"
    con = lake.connect()
    try:
        con.execute(
            # union_by_name: files written before a column was added (the client
            # columns, ip_prefix) merge with newer ones, the missing columns NULL.
            f"COPY (SELECT * FROM read_parquet({listing}, hive_partitioning=false, "
            "union_by_name=true) "
            f"ORDER BY ts, batch_id) TO {sql_str(str(staging))} "
            "(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 262144)"
        )
    finally:
        con.close()
    rows = pq.ParquetFile(staging).metadata.num_rows
    expected = sum(f.rows for f in files)
    if rows != expected:  # never swap in a file that lost or invented rows
        staging.unlink()
        raise RuntimeError(f"compaction of {appid}/{day}: {rows} rows written, {expected} read")
    target = lake.root / rel
    staging.replace(target)
    fsync_tree([target], lake.root)
    lake.catalog.replace_files(
        batch_id,
        f"{COMPACTION_SOURCE}appid={appid}/day={day} ({len(files)} files)",
        [f.path for f in files],
        [LakeFile(rel, appid, day, rows)],
    )
    report.partitions += 1
    report.files_merged += len(files)
    report.rows += rows
    report.batches.append(batch_id)


def _delete_retired(lake: Lake, before: float) -> int:
    paths = lake.catalog.retired(before)
    for path in paths:
        (lake.root / path).unlink(missing_ok=True)
    lake.catalog.forget_retired(paths)
    return len(paths)
