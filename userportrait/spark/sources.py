"""Input files as Spark DataFrames of the standard raw columns (``ingest/sources.py``'s job).

The same columns as the DuckDB sources: the text of each known field, ``ts`` parsed to an
instant (NULL when unparseable), ``ts_text``, ``_err`` for structurally broken records,
plus ``_mid``, from which ``record_numbers`` gives the 1-based record number. The
accepted timestamp texts and the epoch rule are the constants of ``ingest/sources.py``
spelt in Spark SQL; ``tests/test_spark.py`` ingests the same files both ways and
compares lake rows and rejects.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import urlparse

from userportrait.errors import InputError
from userportrait.ingest.normalize_sql import full_match
from userportrait.ingest.sources import (
    _SUFFIXES,
    EPOCH_MS_THRESHOLD,
    FIELDS,
    TEXT_FIELDS,
    TS_TEXT,
    Format,
    _check_columns,
    detect_format,
)
from userportrait.portrait.rules import Reject

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

#: Bits of ``monotonically_increasing_id`` below the partition index.
_ROW_BITS: Final = 33
#: Epoch milliseconds beyond this overflow Spark's microseconds (DuckDB: not a timestamp).
_MAX_EPOCH_MS: Final = (1 << 63) // 1000 - 1


@dataclass(frozen=True, slots=True)
class SparkSource:
    uri: str  # as given: a local path or a URI Spark reads (s3a://, hdfs://, file://)
    format: Format
    columns: tuple[str, ...]
    line_offset: int

    @property
    def local(self) -> Path | None:
        parsed = urlparse(self.uri)
        if parsed.scheme in ("", "file"):
            return Path(parsed.path if parsed.scheme else self.uri)
        return None


def spark_uri(uri: str) -> str:
    """What Spark reads: a local path as ``file://`` (the default FS may be HDFS)."""
    return Path(uri).resolve().as_uri() if urlparse(uri).scheme == "" else uri


def ts_from_int(expr: str) -> str:
    """Spark SQL of ``sources.ts_from_int``: epoch seconds or milliseconds by magnitude."""
    return (
        f"CASE WHEN abs({expr}) >= {EPOCH_MS_THRESHOLD} THEN CASE WHEN abs({expr}) <= "
        f"{_MAX_EPOCH_MS} THEN timestamp_millis({expr}) END "
        f"ELSE timestamp_seconds({expr}) END"
    )


def ts_from_text(expr: str) -> str:
    """Spark SQL of ``sources.ts_from_text`` (naive texts are Asia/Shanghai, the session zone)."""
    t = f"trim({expr})"
    return (
        f"CASE WHEN {full_match(t, '[+-]?[0-9]{1,18}', 'spark')} THEN "
        + ts_from_int(f"CAST({t} AS BIGINT)")
        + f" WHEN {full_match(t, TS_TEXT, 'spark')} THEN CAST({t} AS TIMESTAMP) END"
    )


def _format(uri: str, spark: SparkSession) -> Format:
    local = SparkSource(uri, "csv", (), 0).local
    if local is not None:
        if not local.exists():
            raise InputError(f"{uri}: no such file")
        if not local.is_file():
            raise InputError(f"{uri}: not a file")
        fmt = detect_format(local)
    else:
        suffixes = [s.lower() for s in Path(urlparse(uri).path).suffixes]
        if suffixes and suffixes[-1] == ".gz":
            suffixes = suffixes[:-1]
        found = _SUFFIXES.get(suffixes[-1]) if suffixes else None
        if found is None:
            raise InputError(f"{uri}: unknown format; use {', '.join(sorted(_SUFFIXES))}")
        fmt = found
        if fmt == "json":
            first = spark.read.text(uri).where("trim(value) <> ''").first()
            fmt = "json" if first is not None and first[0].lstrip().startswith("[") else "ndjson"
    if fmt == "json":
        raise InputError(
            f"{uri}: a JSON array; spark ingest reads NDJSON (one object per line), "
            "or load it with `userportrait ingest`"
        )
    return fmt


def open_spark_source(spark: SparkSession, uri: str) -> tuple[SparkSource, DataFrame]:
    """Check ``uri`` and return it with a DataFrame of the standard columns and ``_mid``."""
    fmt = _format(uri, spark)
    path = spark_uri(uri)
    try:
        if fmt == "parquet":
            source, frame = _parquet(spark, uri, path)
        elif fmt == "csv":
            source, frame = _csv(spark, uri, path)
        else:
            source, frame = _json_lines(spark, uri, path)
    except InputError:
        raise
    except Exception as exc:  # AnalysisException and friends: the file is not readable
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError(f"{uri}: cannot read as {fmt}: {first}") from None
    from pyspark.sql import functions as F

    # The record's position, for reject line numbers (``record_numbers``).
    return source, frame.withColumn("_mid", F.monotonically_increasing_id())


def record_numbers(spark: SparkSession, frame: DataFrame) -> DataFrame:
    """``frame`` (with ``_mid`` from ``open_spark_source``) plus ``n``, the record's 1-based
    position in the file: partitions follow file order, so each partition's offset is the
    count of the ones before it. Costs a pass over ``frame``: call it on cached data."""
    from pyspark.sql import functions as F

    counts = sorted(
        frame.groupBy(F.shiftright("_mid", _ROW_BITS).alias("p")).count().collect(),
        key=lambda r: int(r[0]),
    )
    offsets, total = [], 0
    for p, count in counts:
        offsets.append((int(p), total))
        total += int(count)
    base = spark.createDataFrame(offsets or [(0, 0)], "p BIGINT, base BIGINT")
    return (
        frame.withColumn("p", F.shiftright("_mid", _ROW_BITS))
        .join(F.broadcast(base), "p")
        .withColumn("n", F.expr(f"base + (_mid % {1 << _ROW_BITS}) + 1"))
        .drop("p", "base")
    )


def _q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _parquet(spark: SparkSession, uri: str, path: str) -> tuple[SparkSource, DataFrame]:
    raw = spark.read.parquet(path)
    types = {f.name: f.dataType.simpleString() for f in raw.schema.fields}
    lowered = {name.lower(): name for name in types}
    columns = _check_columns(Path(uri), list(lowered))
    ts_col, ts_type = _q(lowered["ts"]), types[lowered["ts"]]
    if ts_type in ("timestamp", "timestamp_ntz"):
        ts_expr = f"CAST({ts_col} AS TIMESTAMP)"  # naive: Asia/Shanghai, as DuckDB reads it
    elif ts_type in ("bigint", "int", "smallint"):
        ts_expr = ts_from_int(f"CAST({ts_col} AS BIGINT)")
    else:
        ts_expr = ts_from_text(f"CAST({ts_col} AS STRING)")
    cols = [f"{ts_expr} AS ts", f"CAST({ts_col} AS STRING) AS ts_text"]
    for f in TEXT_FIELDS:
        cols.append(
            f"CAST({_q(lowered[f])} AS STRING) AS {f}"
            if f in lowered
            else f"CAST(NULL AS STRING) AS {f}"
        )
    cols.append("CAST(NULL AS STRING) AS _err")
    return SparkSource(uri, "parquet", columns, 0), raw.selectExpr(*cols)


def _csv(spark: SparkSession, uri: str, path: str) -> tuple[SparkSource, DataFrame]:
    # FAILFAST: a row DuckDB's strict reader refuses fails the file here too.
    raw = spark.read.options(header="true", mode="FAILFAST", inferSchema="false").csv(path)
    lowered = {n.strip().lower(): n for n in raw.columns}
    columns = _check_columns(Path(uri), list(lowered))
    ts = _q(lowered["ts"])
    cols = [f"{ts_from_text(ts)} AS ts", f"{ts} AS ts_text"]
    for f in TEXT_FIELDS:
        cols.append(f"{_q(lowered[f])} AS {f}" if f in lowered else f"CAST(NULL AS STRING) AS {f}")
    cols.append("CAST(NULL AS STRING) AS _err")
    return SparkSource(uri, "csv", columns, 1), raw.selectExpr(*cols)


_BAD_JSON_TYPES: Final = ("OBJECT", "ARRAY", "BOOLEAN")


def _json_lines(spark: SparkSession, uri: str, path: str) -> tuple[SparkSource, DataFrame]:
    lines = spark.read.text(path).selectExpr("value AS line", "try_parse_json(value) AS v")
    keys = (
        lines.where("schema_of_variant(v) LIKE 'OBJECT<%'")
        .selectExpr("explode(json_object_keys(line)) AS k")
        .distinct()
        .limit(1000)
        .collect()
    )
    present = [k[0] for k in keys]
    columns = _check_columns(Path(uri), present) if present else FIELDS[:3]
    kind = {f: f"schema_of_variant(variant_get(v, '$.{f}'))" for f in FIELDS}
    text = {f: f"variant_get(v, '$.{f}', 'string')" for f in FIELDS}
    cols = [f"{ts_from_text(text['ts'])} AS ts", f"{text['ts']} AS ts_text"]
    cols += [f"{text[f]} AS {f}" for f in TEXT_FIELDS]
    bad_type = " ".join(
        f"WHEN split({kind[f]}, '<')[0] IN {_BAD_JSON_TYPES} THEN "
        f"{Reject.WRONG_TYPE.sql(field=repr(f), kind=f'lower(split({kind[f]}, {chr(39)}<{chr(39)})[0])')}"
        for f in FIELDS
    )
    cols.append(
        "CASE WHEN line IS NULL OR trim(line) = '' THEN 'blank line' "
        f"WHEN v IS NULL THEN {Reject.NOT_JSON.sql()} "
        f"WHEN schema_of_variant(v) NOT LIKE 'OBJECT<%' THEN {Reject.NOT_OBJECT.sql()} "
        f"{bad_type} END AS _err"
    )
    return SparkSource(uri, "ndjson", columns, 0), lines.selectExpr(*cols)
