"""Bulk ingest of one file into the lake: read -> validate -> normalise -> dedup -> write.

Everything runs inside DuckDB over the file (no event becomes a Python object). A batch
is written to ``_staging``, moved into ``events/`` and then committed to the catalog in
one SQLite transaction, so a failure at any point leaves the answers as they were.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import duckdb
import pyarrow.parquet as pq

from userportrait.errors import InputError
from userportrait.ingest import ip_sql
from userportrait.ingest.reject_sql import Appids, appids_of, reason_sql
from userportrait.ingest.sources import Source, open_source
from userportrait.ingest.value_maps import (
    CLIENT_COLUMNS_OUT_SQL,
    age_id_sql,
    age_value,
    client_sql,
    register_client_maps,
    register_device_map,
    register_maps,
    ua_map_sql,
    with_ua_sql,
)
from userportrait.portrait import ipregion
from userportrait.portrait.rules import CLIENT_FIELDS, Reject, appid_problem
from userportrait.sqltext import shanghai_day_sql, sql_str, trimmed_sql
from userportrait.store.catalog import LakeFile, Retention
from userportrait.store.durable import fsync_tree
from userportrait.store.lake import Lake
from userportrait.store.state import update_state

#: Called with (step description, fraction done in 0..1).
Progress = Callable[[str, float], None]

MAX_REPORTED_REJECTS = 1000
#: Rows per Parquet row group of a lake file (a multiple of DuckDB's 2048-row vectors).
ROW_GROUP_ROWS = 122_880
#: zstd at level 1 (DuckDB's default is 3): ~15 % less writer CPU and no bigger files here,
#: as the pages are mostly dictionary ids already.
LAKE_COMPRESSION = "COMPRESSION zstd, COMPRESSION_LEVEL 1"
#: A text source (CSV, NDJSON, JSON) up to this size is parsed once into a temporary
#: table: a batch reads its rows five times (bounds, maps, write, counts, rejects), and
#: re-parsing the text each time was most of a live flush (issue 28: 100,000 events of a
#: WAL segment: 0.91 -> 0.51 s CPU). Bigger or gzipped files keep the view (no copy).
PARSE_ONCE_BYTES = 256 << 20


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """One rejected row of a file, as the rejects file records it."""

    file: str
    line: int
    reason: str
    record: dict[str, Any]


@dataclass(slots=True)
class IngestReport:
    file: str
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    skipped: bool = False  # the same file (by SHA-256) was ingested before
    batch_id: int | None = None
    rejects: list[RejectedRow] = field(default_factory=list)
    rejects_file: str | None = None
    touched: set[tuple[str, str]] = field(default_factory=set)  # (appid, day)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def check_files(lake: Lake, paths: Iterable[Path]) -> None:
    """Open every file and check its columns before anything is written (all-or-nothing CLI)."""
    con = lake.connect()
    try:
        for path in paths:
            open_source(con, path)
    finally:
        con.close()


def ingest_file(lake: Lake, path: Path, progress: Progress | None = None) -> IngestReport:
    report = IngestReport(file=str(path))
    step = progress or (lambda _desc, _frac: None)
    con = lake.connect()
    # The file's SHA-256 (was it ingested before?) is computed in a thread while DuckDB
    # scans the file for its maps: about a second of a 400 MB file off the clock.
    with ThreadPoolExecutor(1, thread_name_prefix="sha256") as pool:
        sha = pool.submit(sha256_of, path)
        try:
            source, select = open_source(con, path)
            with lake.write_lock():
                lake.collect_garbage_locked()  # what a killed writer left behind
                _run(lake, con, source, select, sha, report, step)
        except duckdb.Error as exc:
            raise InputError(f"{path}: {str(exc).strip().splitlines()[0]}") from None
        finally:
            con.close()
    if report.batch_id is not None:
        # Derived state follows the committed batch; a crash here loses nothing.
        update_state(lake, lambda desc, frac: step(f"portraits: {desc}", frac))
    return report


def _run(
    lake: Lake,
    con: duckdb.DuckDBPyConnection,
    source: Source,
    select: str,
    sha_of_file: Future[str],
    report: IngestReport,
    step: Progress,
) -> None:
    """The steps of one batch, under the lake's write lock: check, map, skip a file seen
    before, write, count, record the rejects, commit."""
    appids = _check_rows(con, source, select, lake.catalog.retention())
    maps = _map_values(lake, con, source, step)
    sha = sha_of_file.result()
    if lake.catalog.find_batch_by_sha(sha) is not None:  # under the lock: no race
        report.skipped = True
        step("already ingested", 1.0)
        return
    batch_id = lake.catalog.next_batch_id()
    batch_key = uuid.uuid4().hex[:12]
    files = _write_batch(lake, con, source, appids, maps, batch_id, batch_key, step)
    report.accepted = sum(f.rows for f in files)
    report.touched = {(f.appid, f.day) for f in files}
    _count_rows(con, source, report)
    if report.rejected:
        step("recording rejects", 0.0)
        _write_rejects(lake, con, source, report, batch_key)
    report.batch_id = lake.catalog.commit_batch(
        batch_id, str(source.path), sha, report.accepted, report.rejected, files
    )
    step("done", 1.0)


def _check_rows(
    con: duckdb.DuckDBPyConnection, source: Source, select: str, kept: dict[str, Retention]
) -> Appids | None:
    """Views ``src`` (the file's rows), ``checked`` (each with its ``reason``, NULL when
    accepted; ``kept``: the apps' retention cuts) and ``events`` (plus the compact UA); the
    appid rules decided per distinct appid, when they could be (``reject_sql.appids_of``)."""
    # A .gz file's text may be ten times its size: it keeps the view.
    text = source.format != "parquet" and source.path.suffix.lower() != ".gz"
    once = text and source.path.stat().st_size <= PARSE_ONCE_BYTES
    con.execute(f"CREATE TEMP {'TABLE' if once else 'VIEW'} src AS {select}")
    _appid_bounds(con, source)
    appids = appids_of(con, "appid_bounds")
    cuts = {appid: r.first_kept for appid, r in kept.items()}
    reason = reason_sql(ts_text=source.ts_text, age_int=source.age_int, appids=appids, cuts=cuts)
    con.execute(f"CREATE TEMP VIEW checked AS SELECT *, {reason} AS reason FROM src")
    ua_map = "ua_map" if "user_agent" in source.columns else None
    if ua_map:
        con.execute(f"CREATE TEMP TABLE ua_map AS {ua_map_sql('src')}")
    con.execute(f"CREATE TEMP VIEW events AS {with_ua_sql('checked', ua_map)}")
    return appids


@dataclass(frozen=True, slots=True)
class _Maps:
    """Which value maps a batch joins (``_map_values``)."""

    client: bool  # the client fields' device and platform maps
    device_map: bool  # table ``device_text_map`` (a file without client fields)
    ip: Literal["prefix", "raw"] | None  # the region from the IP; keep its prefix or all


def _map_values(
    lake: Lake, con: duckdb.DuckDBPyConnection, source: Source, step: Progress
) -> _Maps:
    """The value maps of the batch's distinct raw values (``ingest/value_maps.py``)."""
    step("scanning values", 0.0)
    _with_progress(con, lambda: register_maps(con, "src"), lambda f: step("scanning values", f))
    # Files without client fields keep the cheaper one-column platform map, and files
    # without an ip the plain region: no extra columns, no extra joins.
    client = any(f in source.columns for f in CLIENT_FIELDS)
    if client:
        _with_progress(
            con,
            lambda: register_client_maps(con, "events"),
            lambda f: step("scanning devices", f),
        )
    device_map = not client and register_device_map(con, "src")
    ip: Literal["prefix", "raw"] | None = None
    if "ip" in source.columns:
        db = ipregion.load_db(ipregion.active_db(lake.root))
        ip_sql.register_maps(con, "src", True, db)  # region from the IP
        ip = "raw" if lake.settings.store_raw_ip else "prefix"
    return _Maps(client, device_map, ip)


def _write_batch(
    lake: Lake,
    con: duckdb.DuckDBPyConnection,
    source: Source,
    appids: Appids | None,
    maps: _Maps,
    batch_id: int,
    batch_key: str,
    step: Progress,
) -> list[LakeFile]:
    """Write the accepted rows (deduplicated) to ``_staging/`` and move them into the lake."""
    has_event_id = "event_id" in source.columns
    existing = _existing_event_ids(lake, con) if has_event_id else None
    staging = lake.staging_dir / batch_key
    staging.mkdir(parents=True)
    accepted_sql = _accepted_sql(
        batch_id,
        has_event_id,
        existing,
        maps.client,
        maps.ip,
        appid="c.appid" if appids is not None and appids.trimmed else "trim(c.appid)",
        age=f"c.{source.age_int}" if source.age_int else None,
        device_map=maps.device_map,
    )
    only = _single_partition(con)
    if only is not None:
        # One (appid, day), the usual incremental batch: one plain file, which DuckDB
        # writes faster than a one-partition PARTITION_BY.
        target = staging / f"appid={only[0]}" / f"day={only[1]}" / f"b{batch_key}_0.parquet"
        target.parent.mkdir(parents=True)
        copy = (
            f"COPY (SELECT * EXCLUDE (appid, day) FROM ({accepted_sql})) TO "
            f"{sql_str(str(target))} (FORMAT parquet, {LAKE_COMPRESSION}, "
            f"ROW_GROUP_SIZE {ROW_GROUP_ROWS})"
        )
    else:
        copy = (
            f"COPY ({accepted_sql}) TO {sql_str(str(staging))} (FORMAT parquet, "
            f"PARTITION_BY (appid, day), FILENAME_PATTERN 'b{batch_key}_{{i}}', "
            f"{LAKE_COMPRESSION}, ROW_GROUP_SIZE {ROW_GROUP_ROWS})"
        )
    # Row order inside a lake file means nothing (dedup orders by content), and letting
    # DuckDB write partitions in any order is much faster; flushing each partition's
    # buffer every row group (not every 512 Ki rows) keeps 40 day partitions in memory
    # without spilling (42 s -> 25 s for 36 M events on 2 cores).
    con.execute("SET preserve_insertion_order = false")
    con.execute(f"SET partitioned_write_flush_threshold = {ROW_GROUP_ROWS}")
    _with_progress(con, lambda: con.execute(copy), lambda f: step("writing events", f))
    con.execute("RESET partitioned_write_flush_threshold")
    con.execute("SET preserve_insertion_order = true")
    return move_into_lake(lake, staging)


def _count_rows(con: duckdb.DuckDBPyConnection, source: Source, report: IngestReport) -> None:
    """``report.rejected`` and ``report.duplicates`` (``report.accepted`` is set)."""
    rows = _parquet_rows(source)
    if rows is not None and "event_id" not in source.columns:
        # A Parquet file has no blank lines and without event ids nothing is a duplicate:
        # every row not written was rejected, so no second pass over the file is needed.
        report.rejected, valid = rows - report.accepted, report.accepted
    else:
        totals = con.execute(
            "SELECT count(*) FILTER (WHERE reason IS NOT NULL "
            f"AND reason <> {Reject.BLANK_LINE.sql()}), "
            "count(*) FILTER (WHERE reason IS NULL) FROM checked"
        ).fetchone()
        assert totals is not None
        report.rejected, valid = int(totals[0]), int(totals[1])
    report.duplicates = valid - report.accepted


def _appid_bounds(con: duckdb.DuckDBPyConnection, source: Source) -> None:
    """Table ``appid_bounds`` (appid, ts_min, ts_max): the batch's distinct appids with
    bounds of their ts (small), for the appid rules, the one-partition check and the
    event-id lookup. A Parquet file of one appid (the usual one) gets one row from the
    column statistics, with no pass over the file; otherwise one grouping pass."""
    if source.format == "parquet":
        lo, hi = con.execute("SELECT min(appid), max(appid) FROM src").fetchall()[0]
        if lo == hi:  # a NULL appid has no bounds of its own: ts bounds cover every row
            con.execute(
                "CREATE TEMP TABLE appid_bounds AS "
                "SELECT min(appid) AS appid, min(ts) AS ts_min, max(ts) AS ts_max FROM src"
            )
            return
    con.execute(
        "CREATE TEMP TABLE appid_bounds AS "
        "SELECT appid, min(ts) AS ts_min, max(ts) AS ts_max FROM src GROUP BY appid"
    )


def _single_partition(con: duckdb.DuckDBPyConnection) -> tuple[str, str] | None:
    """(appid, day) when every row that could be accepted falls in that one partition.

    Bounds over all rows (rejected ones too, from table ``appid_bounds``), so the answer
    errs towards None.
    """
    row = con.execute(
        "SELECT min(trim(appid)), max(trim(appid)), "
        "CAST(timezone('Asia/Shanghai', min(ts_min)) AS DATE), "
        "CAST(timezone('Asia/Shanghai', max(ts_max)) AS DATE) FROM appid_bounds"
    ).fetchall()[0]
    if row[0] is None or row[0] != row[1] or row[2] is None or row[2] != row[3]:
        return None
    if appid_problem(row[0]) or not isinstance(row[2], dt.date):
        return None  # a date beyond Python's (year 0 and before) comes back as text
    return str(row[0]), row[2].isoformat()


def _parquet_rows(source: Source) -> int | None:
    """The row count of a Parquet source from its footer (None for other formats)."""
    if source.format != "parquet":
        return None
    return int(pq.ParquetFile(source.path).metadata.num_rows)


def _existing_event_ids(lake: Lake, con: duckdb.DuckDBPyConnection) -> str | None:
    """A view of event ids already in the lake for the appids of this batch, if any."""
    appids = [
        r[0]
        for r in con.execute("SELECT DISTINCT trim(appid) FROM appid_bounds").fetchall()
        if r[0]
    ]
    paths = [p for a in appids for p in lake.paths(a)]
    if not paths:
        return None
    listing = "[" + ", ".join(sql_str(p) for p in paths) + "]"
    con.execute(
        "CREATE TEMP TABLE seen AS SELECT DISTINCT appid, day, event_id FROM "
        f"read_parquet({listing}, hive_partitioning=true, hive_types={{'appid': VARCHAR, 'day': DATE}}) "
        "WHERE event_id IS NOT NULL"
    )
    return "seen"


def _accepted_sql(
    batch_id: int,
    has_event_id: bool,
    existing: str | None,
    client: bool = False,
    ip: Literal["prefix", "raw"] | None = None,
    appid: str = "trim(c.appid)",
    age: str | None = None,
    device_map: bool = False,
) -> str:
    """The accepted rows; ``client`` and ``ip`` add the columns and joins of those fields
    (``ip``: keep the prefix only, or the raw address too). ``appid``: SQL of the appid
    (the trim is spared when no appid of the batch needs it); ``age``: SQL of an integer
    age (else the text ``c.age`` is parsed). The raw region, gender and platform come from
    their maps, typed for a cheap write (``sqlrows.raw_type``), and so does the
    device with ``device_map`` (table ``device_text_map``)."""
    age = f"CAST({age} AS SMALLINT)" if age else age_value("c.age")
    device, platform, joins = client_sql(client, "IS NOT DISTINCT FROM")
    if client:
        device = "dm.device_name_out"
    if device_map:
        device = "dt.device_value_out"
        joins += " LEFT JOIN device_text_map dt ON c.device IS NOT DISTINCT FROM dt.device"
    region = ip_sql.region_columns("c", "r", ip == "raw") if ip else "r.province_id, r.city_id"
    rows = (
        f"SELECT {appid} AS appid, {shanghai_day_sql('c.ts')} AS day, "
        f"{trimmed_sql('c.openid')} AS openid, c.ts, nullif(trim(c.event_id), '') AS event_id, "
        "r.province_out AS province_raw, r.city_out AS city_raw, g.gender_out AS gender_raw, "
        f"{'cp' if client else 'p'}.platform_out AS platform_raw, {device} AS device, "
        f"{age} AS age, {region}, g.gender_id, {platform} AS platform_id, "
        f"{age_id_sql(age)} AS age_id, CAST({batch_id} AS INTEGER) AS batch_id"
        f"{CLIENT_COLUMNS_OUT_SQL if client else ''} "
        "FROM events c "
        "LEFT JOIN region_map r ON c.province IS NOT DISTINCT FROM r.province "
        "AND c.city IS NOT DISTINCT FROM r.city "
        "LEFT JOIN gender_map g ON c.gender IS NOT DISTINCT FROM g.gender "
        f"{joins} {ip_sql.join('c') if ip else ''}"
        "WHERE c.reason IS NULL"
    )
    if not has_event_id:
        return rows
    # One event per (appid, day, event_id): the first copy by content order wins,
    # and copies of events already in the lake are dropped (docs/storage.md).
    order = "ts, openid, province_id, city_id, gender_id, platform_id, age_id, device"
    dedup = (
        f"WITH b AS ({rows}) "
        "SELECT * FROM b WHERE event_id IS NULL UNION ALL "
        "SELECT * FROM (SELECT * FROM b WHERE event_id IS NOT NULL "
        f"QUALIFY row_number() OVER (PARTITION BY appid, day, event_id ORDER BY {order} NULLS FIRST) = 1) d"
    )
    if existing:
        dedup = (
            f"SELECT * FROM ({dedup}) n WHERE n.event_id IS NULL OR NOT EXISTS ("
            f"SELECT 1 FROM {existing} s WHERE s.appid = n.appid AND s.day = n.day "
            "AND s.event_id = n.event_id)"
        )
    return dedup


def move_into_lake(lake: Lake, staging: Path) -> list[LakeFile]:
    """Move a batch's Parquet files from ``staging`` (``appid=A/day=D/…``) into ``events/``,
    fsync'd, and remove ``staging``: the files for the catalog to commit (``ingest`` and
    ``spark ingest`` both)."""
    files: list[LakeFile] = []
    for path in sorted(staging.rglob("*.parquet")):
        rel = path.relative_to(staging)  # appid=A/day=D/name.parquet
        appid = rel.parts[0].split("=", 1)[1]
        day = rel.parts[1].split("=", 1)[1]
        target = lake.events_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        rows = pq.ParquetFile(path).metadata.num_rows
        path.replace(target)
        files.append(LakeFile(str(target.relative_to(lake.root)), appid, day, rows))
    # On disk before the catalog names them (and before a WAL segment is dropped).
    fsync_tree((lake.root / f.path for f in files), lake.root)
    for leftover in sorted(staging.rglob("*"), reverse=True):
        leftover.rmdir() if leftover.is_dir() else leftover.unlink()
    staging.rmdir()
    return files


def _write_rejects(
    lake: Lake,
    con: duckdb.DuckDBPyConnection,
    source: Source,
    report: IngestReport,
    batch_key: str,
) -> None:
    lake.rejects_dir.mkdir(parents=True, exist_ok=True)
    target = (
        lake.rejects_dir / f"{time.strftime('%Y%m%dT%H%M%S')}-{source.path.name}-{batch_key}.ndjson"
    )
    fields = ", ".join(
        f"{f} := {f}"
        for f in (
            "appid",
            "openid",
            "event_id",
            "province",
            "city",
            "gender",
            "platform",
            "device",
            "age",
            *CLIENT_FIELDS,
        )
    )
    query = (
        f"SELECT {sql_str(str(source.path))} AS file, CAST(n + {source.line_offset} AS BIGINT) AS line, "
        f"reason, struct_pack(ts := ts_text, {fields}) AS record FROM "
        "(SELECT row_number() OVER () AS n, * FROM checked) "
        f"WHERE reason IS NOT NULL AND reason <> {Reject.BLANK_LINE.sql()} ORDER BY n"
    )
    con.execute(f"COPY ({query}) TO {sql_str(str(target))} (FORMAT json)")
    read_rejects(report, target)


def read_rejects(report: IngestReport, target: Path) -> None:
    """Name the rejects file in ``report`` and list its first records there."""
    report.rejects_file = str(target)
    with target.open(encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i >= MAX_REPORTED_REJECTS:
                break
            item = json.loads(line)
            record = {k: v for k, v in item["record"].items() if v is not None}
            report.rejects.append(
                RejectedRow(item["file"], int(item["line"]), item["reason"], record)
            )


def _with_progress(
    con: duckdb.DuckDBPyConnection, work: Callable[[], object], tick: Callable[[float], None]
) -> None:
    """Run ``work`` while a thread reports DuckDB's own query progress."""
    done = threading.Event()

    def poll() -> None:
        while not done.wait(0.2):
            try:
                pct = con.query_progress()
            except duckdb.Error:
                continue
            if pct >= 0:
                tick(min(pct, 100.0) / 100.0)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    try:
        work()
    finally:
        done.set()
        watcher.join()
    tick(1.0)
