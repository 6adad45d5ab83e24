"""``spark ingest``: the bulk ingest (``ingest/pipeline.py``) as a Spark job.

The same rules, spelt once: the reject reasons are ``reject_sql.reason_sql`` in the
Spark dialect, the region, gender and platform maps come from the shared Python
normalisers over the distinct raw values (``value_maps.map_values``), ages from
``age_value``/``age_id_sql``. The same lake: Hive partitions ``appid=/day=``, one file
per batch and day named ``bKEY_N.parquet``, moved in and committed to the catalog like
any batch; rejects as NDJSON in ``rejects/``. Every other engine reads what Spark wrote.
"""

from __future__ import annotations

import hashlib
import shutil
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from userportrait.ingest import ip_sql
from userportrait.ingest.pipeline import (
    IngestReport,
    Progress,
    move_into_lake,
    read_rejects,
    sha256_of,
)
from userportrait.ingest.reject_sql import reason_sql
from userportrait.ingest.value_maps import (
    CLIENT_COLUMNS_SQL,
    CLIENT_VALUES_SQL,
    DISTINCT_VALUES_SQL,
    age_id_sql,
    age_value,
    client_sql,
    map_client_values,
    map_values,
    ua_map_sql,
    with_ua_sql,
)
from userportrait.portrait import ipregion
from userportrait.portrait.devices import CLIENT_FIELDS
from userportrait.portrait.rules import Reject
from userportrait.spark.session import job_failed, lake_uri, read_lake, spark_errors, temp_name
from userportrait.spark.sources import SparkSource, open_spark_source, record_numbers
from userportrait.store.durable import move_into_place
from userportrait.store.lake import Lake

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

_RECORD_FIELDS = (
    *("appid", "openid", "event_id", "province", "city", "gender", "platform"),
    *("device", "age"),
    *CLIENT_FIELDS,
)
#: The dedup order of ``pipeline._accepted_sql`` with DuckDB's default NULLS LAST spelt out.
_DEDUP_ORDER = (
    "ts, openid, province_id NULLS LAST, city_id NULLS LAST, gender_id NULLS LAST, "
    "platform_id NULLS LAST, age_id NULLS LAST, device NULLS FIRST"
)


def source_identity(source: SparkSource, spark: SparkSession) -> str:
    """SHA-256 of a local file (as ``ingest`` computes it, so either skips the other's
    files); for a remote object, of its URI, size and modification time."""
    local = source.local
    if local is not None:
        return sha256_of(local)
    meta = spark.read.format("binaryFile").load(source.uri).select("length", "modificationTime")
    row = meta.first()
    stamp = f"{source.uri}\0{row[0] if row else ''}\0{row[1] if row else ''}"
    return hashlib.sha256(stamp.encode()).hexdigest()


def spark_ingest_file(
    lake: Lake, spark: SparkSession, uri: str, progress: Progress | None = None
) -> IngestReport:
    """Ingest one file or URI as one batch (the state is left to ``spark build``)."""
    step = progress or (lambda _desc, _frac: None)
    report = IngestReport(file=uri)
    step("reading", 0.0)
    source, frame = open_spark_source(spark, uri)
    sha = source_identity(source, spark)
    if lake.catalog.find_batch_by_sha(sha) is not None:
        report.skipped = True
        step("already ingested", 1.0)
        return report
    with lake.write_lock():
        lake.collect_garbage_locked()
        try:
            _run(lake, spark, source, frame, sha, report, step)
        except spark_errors() as exc:  # an unreadable .gz, a cluster that lost its executors
            raise job_failed(uri, source.format, exc) from None
    return report


def _run(
    lake: Lake,
    spark: SparkSession,
    source: SparkSource,
    frame: DataFrame,
    sha: str,
    report: IngestReport,
    step: Progress,
) -> None:
    views: list[str] = []

    def view(df: DataFrame, prefix: str) -> str:
        name = temp_name(prefix)
        df.createOrReplaceTempView(name)
        views.append(name)
        return name

    src = view(frame, "ingest_src")
    cuts = {appid: r.first_kept for appid, r in lake.catalog.retention().items()}
    reason = reason_sql("spark", cuts=cuts)
    checked_df = spark.sql(f"SELECT *, {reason} AS reason FROM {src}").cache()
    checked = view(checked_df, "ingest_checked")
    ua_map = None
    if "user_agent" in source.columns:
        ua_map = view(spark.sql(ua_map_sql(checked, "spark")), "ua_map")
    events = view(spark.sql(with_ua_sql(checked, ua_map)), "ingest_events")
    try:
        step("scanning values", 0.1)
        maps = _register_maps(spark, checked, view)
        if any(f in source.columns for f in CLIENT_FIELDS):
            maps |= _register_client_maps(spark, events, view)
        if "ip" in source.columns:
            maps |= _register_ip_maps(spark, lake, source, checked, view)
        batch_key = uuid.uuid4().hex[:12]
        batch_id = lake.catalog.next_batch_id()
        accepted = _accepted(spark, lake, events, maps, batch_id, source, view)
        staging = lake.staging_dir / batch_key
        step("writing events", 0.3)
        accepted.repartition("appid", "day").write.partitionBy("appid", "day").parquet(
            lake_uri(lake, staging)
        )
        for part_dir in sorted({p.parent for p in staging.rglob("*.parquet")}):
            # bKEY_N.parquet, N counting within the partition, as DuckDB names them
            for i, path in enumerate(sorted(part_dir.glob("*.parquet"))):
                path.rename(path.with_name(f"b{batch_key}_{i}.parquet"))
        files = move_into_lake(lake, staging)
        report.accepted = sum(f.rows for f in files)
        report.touched = {(f.appid, f.day) for f in files}
        totals = spark.sql(
            f"SELECT count_if(reason IS NOT NULL AND reason <> {Reject.BLANK_LINE.sql()}), "
            f"count_if(reason IS NULL) FROM {checked}"
        ).first()
        assert totals is not None
        report.rejected, valid = int(totals[0]), int(totals[1])
        report.duplicates = valid - report.accepted
        if report.rejected:
            step("recording rejects", 0.8)
            _write_rejects(lake, spark, source, checked, report, batch_key)
        report.batch_id = lake.catalog.commit_batch(
            batch_id, source.uri, sha, report.accepted, report.rejected, files
        )
        step("done", 1.0)
    finally:
        checked_df.unpersist()
        for name in views:
            spark.catalog.dropTempView(name)


def _register_maps(spark: SparkSession, checked: str, view: Any) -> dict[str, str]:
    rows = spark.sql(f"SELECT {DISTINCT_VALUES_SQL.format(src=checked)}").collect()
    regions, genders, platforms = map_values(rows)
    return {
        "region": view(
            spark.createDataFrame(
                regions, "province STRING, city STRING, province_id SMALLINT, city_id INT"
            ),
            "region_map",
        ),
        "gender": view(
            spark.createDataFrame(genders, "gender STRING, gender_id TINYINT"), "gender_map"
        ),
        "platform": view(
            spark.createDataFrame(platforms, "platform STRING, platform_id TINYINT"),
            "platform_map",
        ),
    }


def _register_client_maps(spark: SparkSession, checked: str, view: Any) -> dict[str, str]:
    rows = spark.sql(f"SELECT {CLIENT_VALUES_SQL.format(src=checked)}").collect()
    device_rows, platform_rows = map_client_values(rows)
    return {
        "device": view(
            spark.createDataFrame(
                device_rows,
                "device STRING, model STRING, brand STRING, ua_compact STRING, device_name STRING",
            ),
            "device_map",
        ),
        "client_platform": view(
            spark.createDataFrame(
                platform_rows,
                "platform STRING, system STRING, ua_compact STRING, brand STRING, "
                "platform_id TINYINT",
            ),
            "client_platform_map",
        ),
    }


def _register_ip_maps(
    spark: SparkSession, lake: Lake, source: SparkSource, checked: str, view: Any
) -> dict[str, str]:
    """``ip_sql``'s ``ip_map``, from the distinct ip texts of the batch."""
    has_ip = "ip" in source.columns
    db = ipregion.load_db(ipregion.active_db(lake.root)) if has_ip else None
    distinct_df = spark.sql(ip_sql.distinct_sql(checked, "spark") + ("" if has_ip else " LIMIT 0"))
    distinct = view(distinct_df.cache(), "ip_distinct")
    keys = [
        r[0]
        for r in spark.sql(
            f"SELECT DISTINCT ip_key FROM {distinct} WHERE ip_key IS NOT NULL"
        ).collect()
    ]
    texts = [
        r[0] for r in spark.sql(f"SELECT ip_text FROM {distinct} WHERE ip_key IS NULL").collect()
    ]
    key_map = view(
        spark.createDataFrame(
            ip_sql.key_rows(np.array(keys, dtype=np.int64), db), ip_sql.KEY_MAP_SPARK
        ),
        "ip_key_map",
    )
    text_map = view(
        spark.createDataFrame(ip_sql.text_rows(texts, db), ip_sql.TEXT_MAP_SPARK),
        "ip_text_map",
    )
    ip_map = spark.sql(ip_sql.map_sql(distinct, key_map, text_map)).cache()
    ip_map.count()  # materialised while ip_distinct is cached
    distinct_df.unpersist()
    return {"ip": view(ip_map, "ip_map")}


def _accepted(
    spark: SparkSession,
    lake: Lake,
    checked: str,
    maps: dict[str, str],
    batch_id: int,
    source: SparkSource,
    view: Any,
) -> DataFrame:
    age = age_value("c.age")
    client = "device" in maps
    raw_ip = lake.settings.store_raw_ip
    region = (
        ip_sql.region_columns("c", "r", raw_ip, "spark")
        if "ip" in maps
        else "r.province_id, r.city_id"
    )
    ip_join = ip_sql.join("c", maps["ip"]) if "ip" in maps else ""
    device, platform, joins = client_sql(
        client,
        "<=>",
        (maps["platform"], maps.get("device", ""), maps.get("client_platform", "")),
    )
    rows = spark.sql(
        "SELECT trim(c.appid) AS appid, CAST(c.ts AS DATE) AS day, "
        "trim(c.openid) AS openid, c.ts, nullif(trim(c.event_id), '') AS event_id, "
        "c.province AS province_raw, c.city AS city_raw, c.gender AS gender_raw, "
        f"c.platform AS platform_raw, {device} AS device, "
        f"{age} AS age, {region}, g.gender_id, {platform} AS platform_id, "
        f"{age_id_sql(age)} AS age_id, CAST({batch_id} AS INT) AS batch_id"
        f"{CLIENT_COLUMNS_SQL if client else ''} "
        f"FROM {checked} c "
        f"LEFT JOIN {maps['region']} r ON c.province <=> r.province AND c.city <=> r.city "
        f"LEFT JOIN {maps['gender']} g ON c.gender <=> g.gender "
        f"{joins} {ip_join}"
        "WHERE c.reason IS NULL"
    )
    columns = rows.columns
    if "event_id" not in source.columns:
        return rows
    b = view(rows, "ingest_rows")
    # One event per (appid, day, event_id): the first copy in content order, and none
    # that the lake already holds (docs/storage.md).
    dedup = spark.sql(
        f"SELECT * FROM {b} WHERE event_id IS NULL UNION ALL "
        f"SELECT {', '.join(columns)} FROM (SELECT *, row_number() OVER (PARTITION BY appid, "
        f"day, event_id ORDER BY {_DEDUP_ORDER}) AS _k FROM {b} WHERE event_id IS NOT NULL) "
        "WHERE _k = 1"
    )
    # Only the lake files of the (appid, day) partitions this batch touches: the day is
    # part of the key, so a daily batch never reads the history's event ids.
    touched = {
        (r[0], r[1].isoformat())
        for r in spark.sql(
            f"SELECT DISTINCT appid, day FROM {b} WHERE event_id IS NOT NULL"
        ).collect()
    }
    files = [f for a in {a for a, _ in touched} for f in lake.files(a) if (a, f.day) in touched]
    if not files:
        return dedup
    seen = read_lake(spark, lake, files).where("event_id IS NOT NULL")
    return dedup.join(
        seen.select("appid", "day", "event_id").distinct(),
        on=["appid", "day", "event_id"],
        how="left_anti",
    ).select(*columns)


def _write_rejects(
    lake: Lake,
    spark: SparkSession,
    source: SparkSource,
    checked: str,
    report: IngestReport,
    batch_key: str,
) -> None:
    lake.rejects_dir.mkdir(parents=True, exist_ok=True)
    name = Path(source.uri).name
    target = lake.rejects_dir / f"{time.strftime('%Y%m%dT%H%M%S')}-{name}-{batch_key}.ndjson"
    numbered = temp_name("ingest_numbered")
    record_numbers(spark, spark.table(checked)).createOrReplaceTempView(numbered)
    fields = ", ".join(f"'{f}', {f}" for f in _RECORD_FIELDS)
    file_lit = "'" + source.uri.replace("\\", "\\\\").replace("'", "\\'") + "'"
    rejects = spark.sql(
        f"SELECT {file_lit} AS file, CAST(n + {source.line_offset} AS BIGINT) AS line, "
        f"reason, named_struct('ts', ts_text, {fields}) AS record FROM {numbered} "
        f"WHERE reason IS NOT NULL AND reason <> {Reject.BLANK_LINE.sql()} ORDER BY n"
    )
    out = lake.root / "_tmp" / f"rejects-{batch_key}"
    rejects.coalesce(1).write.option("ignoreNullFields", "false").json(lake_uri(lake, out))
    move_into_place(next(out.glob("part-*.json")), target)
    shutil.rmtree(out, ignore_errors=True)
    spark.catalog.dropTempView(numbered)
    read_rejects(report, target)
