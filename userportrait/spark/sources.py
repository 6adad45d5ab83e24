"""Input files as Spark DataFrames of the standard raw columns (``ingest/sources.py``'s job).

The same columns as the DuckDB sources: the text of each known field, ``ts`` parsed to an
instant (NULL when unparseable), ``ts_text``, ``_err`` for structurally broken records,
plus ``_mid``, from which ``record_numbers`` gives the 1-based record number. The
accepted timestamp texts and the epoch rule are the constants of ``portrait/rules.py``
spelt in Spark SQL; ``tests/test_spark.py`` ingests the same files both ways and
compares lake rows and rejects.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlparse

from userportrait.errors import InputError
from userportrait.ingest.csv_rows import OPEN_QUOTE, field_pattern, opens_quote
from userportrait.ingest.sources import (
    EVENT_FIELDS,
    SUFFIXES,
    Fields,
    Format,
    check_columns,
    check_file,
    csv_header,
    detect_format,
    open_bytes,
    read_csv_header,
    ts_from_int,
    ts_from_text,
)
from userportrait.portrait import rules
from userportrait.portrait.rules import BAD_JSON_TYPES, Reject

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, Row, SparkSession

#: Bits of ``monotonically_increasing_id`` below the partition index.
_ROW_BITS: Final = 33
#: The partition index of the records ``_join_records`` puts together: after every real one.
_JOINED: Final = 1 << 29


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


def _format(uri: str, spark: SparkSession) -> Format:
    local = SparkSource(uri, "csv", (), 0).local
    if local is not None:
        check_file(local, uri)
        fmt = detect_format(local)
    else:
        suffixes = [s.lower() for s in Path(urlparse(uri).path).suffixes]
        if suffixes and suffixes[-1] == ".gz":
            suffixes = suffixes[:-1]
        found = SUFFIXES.get(suffixes[-1]) if suffixes else None
        if found is None:
            raise InputError(f"{uri}: unknown format; use {', '.join(sorted(SUFFIXES))}")
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


def open_spark_source(
    spark: SparkSession, uri: str, fields: Fields = EVENT_FIELDS
) -> tuple[SparkSource, DataFrame]:
    """Check ``uri`` and return it with a DataFrame of the standard columns of ``fields``
    (events, or profiles) and ``_mid``."""
    fmt = _format(uri, spark)
    path = spark_uri(uri)
    try:
        if fmt == "parquet":
            source, frame = _parquet(spark, uri, path, fields)
        elif fmt == "csv":
            source, frame = _csv(spark, uri, path, fields)
        else:
            source, frame = _json_lines(spark, uri, path, fields)
    except InputError:
        raise
    except Exception as exc:  # AnalysisException and friends: the file is not readable
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError(f"{uri}: cannot read as {fmt}: {first}") from None
    from pyspark.sql import functions as F

    # The record's position, for reject line numbers (``record_numbers``); CSV numbers
    # its lines itself.
    if "_mid" in frame.columns:
        return source, frame
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


def _parquet(
    spark: SparkSession, uri: str, path: str, fields: Fields
) -> tuple[SparkSource, DataFrame]:
    raw = spark.read.parquet(path)
    types = {f.name: f.dataType.simpleString() for f in raw.schema.fields}
    lowered = {name.lower(): name for name in types}
    columns = check_columns(Path(uri), list(lowered), fields)
    if fields.time not in lowered:  # an optional time column (a profile's updated_at)
        ts_col, ts_type = "CAST(NULL AS STRING)", "string"
    else:
        ts_col, ts_type = _q(lowered[fields.time]), types[lowered[fields.time]]
    if ts_type in ("timestamp", "timestamp_ntz"):
        ts_expr = f"CAST({ts_col} AS TIMESTAMP)"  # naive: Asia/Shanghai, as DuckDB reads it
    elif ts_type in ("bigint", "int", "smallint"):
        ts_expr = ts_from_int(f"CAST({ts_col} AS BIGINT)", "spark")
    else:
        ts_expr = ts_from_text(f"CAST({ts_col} AS STRING)", "spark")
    cols = [f"{ts_expr} AS ts", f"CAST({ts_col} AS STRING) AS ts_text"]
    for f in fields.text:
        cols.append(
            f"CAST({_q(lowered[f])} AS STRING) AS {f}"
            if f in lowered
            else f"CAST(NULL AS STRING) AS {f}"
        )
    cols.append("CAST(NULL AS STRING) AS _err")
    return SparkSource(uri, "parquet", columns, 0), raw.selectExpr(*cols)


def _csv(spark: SparkSession, uri: str, path: str, fields: Fields) -> tuple[SparkSource, DataFrame]:
    """Lines as text, split by ``csv_rows``'s grammar: each broken row is rejected on its
    own, with the reason and line number ``ingest`` gives (DuckDB's strict reader)."""
    from pyspark.sql import functions as F

    lines = spark.read.text(path).select(
        F.col("value").alias("line"),
        F.col("_metadata.file_path").alias("_file"),
        F.monotonically_increasing_id().alias("_mid"),  # see record_numbers
        F.expr("is_valid_utf8(value)").alias("_utf8"),
        F.expr("octet_length(value)").alias("_bytes"),
    )
    local = SparkSource(uri, "csv", (), 0).local
    newline = "\n"  # how a quoted newline is put back (the text reader drops line ends)
    if local is not None:
        delim, names = read_csv_header(local)
        with open_bytes(local) as fh:
            first = fh.readline(1 << 24)
        newline = "\r\n" if first.endswith(b"\r\n") else "\r" if b"\r" in first else "\n"
    else:
        first = lines.select("line").first()
        delim, names = csv_header(first[0].encode() if first is not None else b"")
    columns = check_columns(Path(uri), [n.strip().lower() for n in names], fields)
    split = _split(lines, delim)
    # Each file's first line is its header; a line ending inside a quoted field makes the
    # rows from there on multi-line records, put together on the driver (rare).
    bounds = (
        split.groupBy("_file")
        .agg(F.min("_mid"), F.min(F.when(F.col("_opens"), F.col("_mid"))))
        .collect()
    )
    heads = [int(b[1]) for b in bounds]
    opens = [int(b[2]) for b in bounds if b[2] is not None]
    records = split.withColumn("_head", F.col("_mid").isin(heads))
    if opens:
        start = min(opens)
        rest = split.where(F.col("_mid") >= start).orderBy("_mid")
        joined = _join_records(rest.toLocalIterator(), delim, set(heads), newline)
        tail = spark.createDataFrame(
            joined,
            "line STRING, _file STRING, _mid BIGINT, _utf8 BOOLEAN, _bytes INT, _head BOOLEAN",
        )
        head = records.where(F.col("_mid") < start).drop("_t", "_whole", "_opens")
        records = _split(head.unionByName(tail), delim)
    err, cols = _csv_columns(names, fields)
    frame = records.withColumn("_err", F.expr(err)).selectExpr(*cols, "_err", "_mid")
    return SparkSource(uri, "csv", columns, 0), frame


def _split(lines: DataFrame, delim: str) -> DataFrame:
    """``lines`` plus ``_t``, its fields; ``_whole``, whether they are the whole line (else
    a quote is broken); ``_opens``, whether it ends inside a quoted field."""
    from pyspark.sql import functions as F

    fields = F.regexp_extract_all(
        F.concat("line", F.lit(delim)), F.lit("\\G" + field_pattern(delim)), F.lit(1)
    )
    done = F.length(F.array_join("_t", delim)) + F.when(F.size("_t") > 0, 1).otherwise(0)
    return (
        lines.withColumn("_t", fields)
        .withColumn("_whole", F.length(F.array_join("_t", delim)) == F.length("line"))
        .withColumn(
            "_opens",
            # a line without a quote opens none: spares the pass over the file that looks
            # for open quotes splitting every line
            F.col("line").contains('"')
            & ~F.col("_whole")
            & F.substr(F.col("line"), done + 1).rlike(f"(?s)^{OPEN_QUOTE}\\z"),
        )
    )


def _join_records(
    rows: Iterator[Row], delim: str, heads: set[int], newline: str
) -> list[tuple[str, str, int, bool, int, bool]]:
    """Lines (in file order, from one that opens a quote) as records: a quoted field goes
    on over the next lines until its quote closes, or to the end of the file. The records
    are numbered after all others (``_mid`` in partition ``_JOINED``), so that a record
    counts as one row, as DuckDB numbers them."""
    out: list[list[Any]] = []
    current: list[Any] | None = None  # [lines, file, valid UTF-8, longest line, header]
    for row in rows:
        line, file = row["line"], row["_file"]
        if current is not None and current[1] == file:
            current[0].append(line)
            current[2] = current[2] and row["_utf8"]
            current[3] = max(current[3], row["_bytes"])
            if '"' in line and not opens_quote(newline.join(current[0]), delim):
                out.append(current)
                current = None
            continue
        if current is not None:  # a quote open at the end of its file
            out.append(_unclosed(current))
        current = [[line], file, row["_utf8"], row["_bytes"], int(row["_mid"]) in heads]
        if not row["_opens"]:
            out.append(current)
            current = None
    if current is not None:
        out.append(_unclosed(current))
    first = _JOINED << _ROW_BITS
    return [(newline.join(r[0]), r[1], first + i, r[2], r[3], r[4]) for i, r in enumerate(out)]


def _unclosed(record: list[Any]) -> list[Any]:
    """A record whose quote is never closed: refused for that alone (DuckDB checks
    neither the encoding nor the line lengths of what the quote swallowed)."""
    return [record[0], record[1], True, 0, record[4]]


def _csv_columns(names: list[str], fields: Fields) -> tuple[str, list[str]]:
    """``_err`` of split CSV rows (what ``ingest`` rejects a row for, or NULL), and the
    standard columns from them (all NULL for a refused row, as DuckDB gives them)."""
    width = len(names)
    index = {n.strip().lower(): i for i, n in enumerate(names)}  # the last of a name, as ingest
    extra = f"exists(slice(_t, {width + 1}, size(_t)), f -> f NOT IN ('', '\"\"'))"
    err = (
        # the header: one of the lines, never a record
        f"CASE WHEN _head THEN {Reject.BLANK_LINE.sql()} "
        f"WHEN NOT _utf8 THEN {Reject.NOT_UTF8.sql()} "
        f"WHEN _bytes >= {rules.MAX_LINE_BYTES} THEN {Reject.LINE_TOO_LONG.sql()} "
        f"WHEN line = '' THEN {Reject.BLANK_LINE.sql()} "
        f"WHEN NOT _whole THEN {Reject.NOT_CLOSED.sql()} "
        f"WHEN size(_t) < {width} OR (size(_t) > {width} AND {extra}) THEN "
        f"{Reject.WRONG_WIDTH.sql(fields='size(_t)', width=repr(str(width)))} END"
    )

    def value(f: str) -> str:
        if f not in index:
            return "CAST(NULL AS STRING)"
        t = f"_t[{index[f]}]"
        unquoted = f"replace(regexp_extract({t}, '(?s)^ ?\"(.*)\" *$', 1), '\"\"', '\"')"
        return (
            f"CASE WHEN _err IS NULL THEN nullif(CASE WHEN {t} LIKE '\"%' OR {t} LIKE ' \"%' "
            f"THEN {unquoted} ELSE {t} END, '') END"
        )

    text = {f: value(f) for f in fields.known}
    return err, [
        f"{ts_from_text(text[fields.time], 'spark')} AS ts",
        f"{text[fields.time]} AS ts_text",
        *(f"{text[f]} AS {f}" for f in fields.text),
    ]


def _json_lines(
    spark: SparkSession, uri: str, path: str, fields: Fields
) -> tuple[SparkSource, DataFrame]:
    # A line that is not UTF-8 or too long is refused whole (no fields), as ingest does.
    readable = f"is_valid_utf8(value) AND octet_length(value) < {rules.MAX_LINE_BYTES}"
    lines = spark.read.text(path).selectExpr(
        "value AS line", f"CASE WHEN {readable} THEN try_parse_json(value) END AS v"
    )
    keys = (
        lines.where("schema_of_variant(v) LIKE 'OBJECT<%'")
        .selectExpr("explode(json_object_keys(line)) AS k")
        .distinct()
        .limit(1000)
        .collect()
    )
    present = [k[0] for k in keys]
    columns = check_columns(Path(uri), present, fields) if present else fields.required
    kind = {f: f"schema_of_variant(variant_get(v, '$.{f}'))" for f in fields.known}
    text = {f: f"variant_get(v, '$.{f}', 'string')" for f in fields.known}
    time = text[fields.time]
    cols = [f"{ts_from_text(time, 'spark')} AS ts", f"{time} AS ts_text"]
    cols += [f"{text[f]} AS {f}" for f in fields.text]
    bad_type = " ".join(
        f"WHEN split({kind[f]}, '<')[0] IN {BAD_JSON_TYPES} THEN "
        f"{Reject.WRONG_TYPE.sql(field=repr(f), kind=f'lower(split({kind[f]}, {chr(39)}<{chr(39)})[0])')}"
        for f in fields.known
    )
    cols.append(
        f"CASE WHEN NOT is_valid_utf8(line) THEN {Reject.NOT_UTF8.sql()} "
        f"WHEN octet_length(line) >= {rules.MAX_LINE_BYTES} "
        f"THEN {Reject.LINE_TOO_LONG.sql()} "
        f"WHEN line IS NULL OR trim(line) = '' THEN {Reject.BLANK_LINE.sql()} "
        f"WHEN v IS NULL THEN {Reject.NOT_JSON.sql()} "
        f"WHEN schema_of_variant(v) NOT LIKE 'OBJECT<%' THEN {Reject.NOT_OBJECT.sql()} "
        f"{bad_type} END AS _err"
    )
    return SparkSource(uri, "ndjson", columns, 0), lines.selectExpr(*cols)
