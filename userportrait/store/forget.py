"""Forgetting users (a deletion request: PIPL Art. 47, GDPR Art. 17; docs/operations.md).

``forget(lake, appid, openids)`` removes every trace of those users of that app from the
data directory, under the writer lock:

1. the records of theirs in ``rejects/`` (each file that mentions them written anew);
2. their events and profiles: every lake and profile file holding a row of theirs is
   copied without those rows, and the copies replace the originals in one catalog
   transaction (``Catalog.commit_forget``) — the moment the forget happens; the old
   files are deleted at once, not kept for a grace period as compaction keeps them;
3. the app's derived state, patched (``state/forgetting.py``): their rows in the user
   dictionary, day partitions and heads go, their first days and their share of every
   end day's span histograms too; the old files are deleted when the new state is
   published. The state is brought up to the catalog first, so that the patch applies
   to the state of the batch before the forget.

A forget killed before step 2's commit leaves the events as they were (its copies are
orphans the next writer removes); after it, they are gone and the state follows on the
next catch-up (which rebuilds the app from the lake: a forget it did not see patched).
Run again, a forget finds nothing more to remove. The write-ahead log of a running server
is flushed into the lake first (``LiveIngest.forget``; the CLI flushes one left by a
stopped server: ``flush_leftover_wal``).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pyarrow.parquet as pq

from userportrait.errors import InvalidRequest
from userportrait.sqlrows import register_rows
from userportrait.sqltext import sql_str
from userportrait.store.catalog import LakeFile, ProfileFile, Retention
from userportrait.store.durable import atomic_write_bytes, fsync_tree
from userportrait.store.lake import Lake
from userportrait.store.state import catch_up, forget_in_state

#: Openids one forget takes at most (``POST /v1/forget``'s limit; the CLI sends more in
#: several forgets).
MAX_OPENIDS: Final = 10_000
#: Files copied at once (each copy's DuckDB ``COPY`` waits on its fsync in part).
COPY_THREADS: Final = 4
#: As the ingest writes the lake (``ingest/pipeline.py``): the copies are its files again.
LAKE_COMPRESSION: Final = "COMPRESSION zstd, COMPRESSION_LEVEL 1"
#: The source of a forget's catalog batch starts with this (no openid is ever written
#: to the catalog).
FORGET_SOURCE: Final = "forget of "


@dataclass(slots=True)
class ForgetReport:
    users: int = 0  # of the openids given, those with an event or a profile
    events: int = 0  # event rows removed from the lake
    profiles: int = 0  # profile records removed
    rejects: int = 0  # rejected records removed from rejects/
    files: int = 0  # lake and profile files rewritten
    batch_id: int | None = None
    lake_s: float = 0.0  # seconds: the rejects, lake and profile files (steps 1-2)
    state_s: float = 0.0  # seconds: the derived state (step 3)


def forget(lake: Lake, appid: str, openids: Iterable[str]) -> ForgetReport:
    """Remove every trace of ``openids`` of ``appid`` (see the module docstring)."""
    wanted = sorted(set(openids))
    if not wanted or not all(isinstance(o, str) and o for o in wanted):
        raise InvalidRequest("openids must be a non-empty list of non-empty strings")
    if len(wanted) > MAX_OPENIDS:
        raise InvalidRequest(f"at most {MAX_OPENIDS} openids per forget, got {len(wanted)}")
    report = ForgetReport()
    with lake.write_lock():
        lake.collect_garbage_locked()
        catch_up(lake)  # (the patch applies to the state of the batch before the forget)
        before = lake.catalog.version()
        t = time.perf_counter()
        report.rejects = _forget_rejects(lake.rejects_dir, appid, set(wanted))
        _forget_rows(lake, appid, wanted, report)
        report.lake_s = time.perf_counter() - t
        if report.batch_id is not None:
            t = time.perf_counter()
            if not forget_in_state(lake, appid, wanted, before, report.batch_id):
                catch_up(lake)  # a state that was behind or failed: rebuilt for the app
            report.state_s = time.perf_counter() - t
    return report


def openids_of(body: dict[str, Any]) -> list[str]:
    """The openids of a ``POST /v1/forget`` body, ``{"openids": [...]}`` (47001 otherwise;
    ``forget`` checks the count)."""
    openids = body.get("openids")
    if set(body) != {"openids"} or not isinstance(openids, list):
        raise InvalidRequest('the body is {"openids": ["OPENID", ...]}')
    if not all(isinstance(o, str) for o in openids):
        raise InvalidRequest("openids must be strings")
    return openids


def _forget_rows(lake: Lake, appid: str, wanted: list[str], report: ForgetReport) -> None:
    """Step 2: the lake and profile files (and the first days an expiry kept) without the
    users' rows, committed at once."""
    events = lake.catalog.files(appid)
    profiles = lake.catalog.profile_files(appid)
    kept = lake.catalog.retention_of(appid)
    first_seen = [kept.first_seen] if kept and kept.first_seen else []
    if not events and not profiles and not first_seen:
        return
    con = lake.connect()
    try:
        register_rows(con, "forgotten", ["openid"], [(o,) for o in wanted], ["VARCHAR"])
        paths = [f.path for f in events] + [p.path for p in profiles] + first_seen
        hits = _holding(lake, con, paths)
        if not hits:
            return
        found = {openid for per_file in hits.values() for openid in per_file[1]}
        report.users = len(found)
        batch_id = lake.catalog.next_batch_id()
        key = uuid.uuid4().hex[:8]
        lake.staging_dir.mkdir(parents=True, exist_ok=True)
        old: list[str] = []
        new: list[LakeFile] = []
        copies: list[tuple[str, str, int]] = []  # (file, its copy without them, rows)
        for f in events:
            if f.path not in hits:
                continue
            old.append(f.path)
            report.events += hits[f.path][0]
            rows = f.rows - hits[f.path][0]
            if rows:  # a file left empty is dropped: the day may go with it
                rel = f"events/appid={appid}/day={f.day}/f{batch_id}_{key}_{len(old)}.parquet"
                copies.append((f.path, rel, rows))
                new.append(LakeFile(rel, appid, f.day, rows))
        old_profiles: list[str] = []
        new_profiles: list[ProfileFile] = []
        for p in profiles:
            if p.path not in hits:
                continue
            old_profiles.append(p.path)
            report.profiles += hits[p.path][0]
            rows = p.rows - hits[p.path][0]
            if rows:
                rel = f"profiles/appid={appid}/b{p.batch_id}_f{batch_id}_{key}.parquet"
                copies.append((p.path, rel, rows))
                new_profiles.append(ProfileFile(rel, appid, p.batch_id, rows))
        # The first days an expiry kept hold openids too (store/expire.py): the same way.
        retention = None
        old_first_seen: list[str] = []
        if kept and kept.first_seen and kept.first_seen in hits:
            old_first_seen.append(kept.first_seen)
            rows = _rows(lake, kept.first_seen) - hits[kept.first_seen][0]
            rel = f"first_seen/appid={appid}/first_seen.b{batch_id}.parquet"
            copies.append((kept.first_seen, rel, rows))
            retention = Retention(kept.first_kept, rel)
        _copy_all(lake, wanted, copies)
    finally:
        con.close()
    written = [lake.root / f.path for f in new] + [lake.root / p.path for p in new_profiles]
    if retention is not None and retention.first_seen:
        written.append(lake.root / retention.first_seen)
    fsync_tree(written, lake.root)
    report.files = len(old) + len(old_profiles) + len(old_first_seen)
    report.batch_id = lake.catalog.commit_forget(
        batch_id,
        appid,
        f"{FORGET_SOURCE}{report.users} users of {appid}",
        old,
        new,
        old_profiles,
        new_profiles,
        retention=retention,
    )
    for path in old + old_profiles + old_first_seen:  # no grace period: they hold the rows
        (lake.root / path).unlink(missing_ok=True)


def _rows(lake: Lake, path: str) -> int:
    return int(pq.ParquetFile(lake.root / path).metadata.num_rows)


def _holding(lake: Lake, con: Any, paths: list[str]) -> dict[str, tuple[int, set[str]]]:
    """Per file (relative path) holding a row of the forgotten users: the rows, the openids."""
    if not paths:
        return {}
    listing = "[" + ", ".join(sql_str(str(lake.root / p)) for p in paths) + "]"
    root = str(lake.root) + os.sep
    rows = con.execute(
        f"SELECT filename, openid, count(*) FROM read_parquet({listing}, filename=true, "
        "hive_partitioning=false, union_by_name=true) "
        "WHERE openid IN (SELECT openid FROM forgotten) GROUP BY ALL"
    ).fetchall()
    hits: dict[str, tuple[int, set[str]]] = {}
    for filename, openid, count in rows:
        rel = str(filename).removeprefix(root)
        n, ids = hits.get(rel, (0, set()))
        ids.add(openid)
        hits[rel] = (n + int(count), ids)
    return hits


def _copy_all(lake: Lake, wanted: list[str], copies: list[tuple[str, str, int]]) -> None:
    """Every ``(path, rel, rows)`` of ``copies``: ``path`` without the forgotten users at
    ``rel``, a few at once (a copy waits on its file's fsync as much as on a core)."""

    def some(jobs: list[tuple[str, str, int]]) -> None:
        con = lake.connect()
        try:
            register_rows(con, "forgotten", ["openid"], [(o,) for o in wanted], ["VARCHAR"])
            for job in jobs:
                _copy_without(lake, con, *job)
        finally:
            con.close()

    n = min(COPY_THREADS, len(copies))
    if n:
        with ThreadPoolExecutor(n, thread_name_prefix="forget-copy") as pool:
            for done in [pool.submit(some, copies[i::n]) for i in range(n)]:
                done.result()


def _copy_without(lake: Lake, con: Any, path: str, rel: str, rows: int) -> None:
    """``path`` without the forgotten users' rows, at ``rel`` (same columns, same order)."""
    staging = lake.staging_dir / f"forget-{uuid.uuid4().hex}.parquet"
    con.execute(
        f"COPY (SELECT * FROM read_parquet({sql_str(str(lake.root / path))}, "
        "hive_partitioning=false) WHERE openid NOT IN (SELECT openid FROM forgotten)) "
        f"TO {sql_str(str(staging))} (FORMAT parquet, {LAKE_COMPRESSION}, "
        "ROW_GROUP_SIZE 262144)"
    )
    written = pq.ParquetFile(staging).metadata.num_rows
    if written != rows:  # never swap in a file that lost other users' rows
        staging.unlink()
        raise RuntimeError(f"forget: {written} rows written of {path}, {rows} expected")
    target = lake.root / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    staging.replace(target)


def _forget_rejects(directory: Path, appid: str, wanted: set[str]) -> int:
    """Step 1: every rejects file that mentions the users written anew without them."""
    removed = 0
    if not directory.exists():
        return 0
    for path in sorted(directory.glob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if not any(o.encode() in data for o in wanted):
            continue
        kept: list[bytes] = []
        for line in data.splitlines(keepends=True):
            if _mentions(line, appid, wanted):
                removed += 1
            else:
                kept.append(line)
        atomic_write_bytes(path, b"".join(kept))
    return removed


def _mentions(line: bytes, appid: str, wanted: set[str]) -> bool:
    """A rejected record of one of the users: its openid is one of theirs and its appid
    is the app's (or unreadable: a record that failed on its appid is dropped too)."""
    try:
        item = json.loads(line)
    except ValueError:
        return any(o.encode() in line for o in wanted)
    record = item.get("record", item) if isinstance(item, dict) else None
    if not isinstance(record, dict):
        return any(o.encode() in line for o in wanted)
    if record.get("openid") not in wanted:
        return False
    app = record.get("appid")
    return app == appid or not isinstance(app, str) or not app
