"""Open an input file in DuckDB as rows of raw fields (docs/ingest.md), whatever its format.

Every source becomes the same columns: the text of each known field (``appid`` …
``age``), ``ts`` already parsed to TIMESTAMPTZ (NULL when unparseable), ``ts_text`` for
error messages, and ``_err``, a reason when the record is structurally broken (not JSON,
wrong JSON type, a CSV row of the wrong width, a line that is not UTF-8). Problems of the
whole file (missing, unknown format, missing columns, unreadable) raise ``InputError``
before anything is written.

A row DuckDB's CSV reader cannot read (not UTF-8; more or fewer fields than the header)
would fail the whole file, so such rows are found first (``store_rejects``) and put back
in their place as rejects with a reason, the file's other rows kept. The file
is then read twice, so this is done for CSV always and for NDJSON only when a cheap pass
in Python finds bytes that are not UTF-8.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import itertools
import os
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import duckdb

from userportrait.errors import InputError
from userportrait.ingest.csv_rows import row_reason
from userportrait.portrait import rules
from userportrait.portrait.rules import (
    BAD_JSON_TYPES,
    EPOCH_MS_FROM,
    FIELDS,
    INT_TEXT,
    REQUIRED,
    TS_TEXT,
    Reject,
)
from userportrait.sqlrows import register_rows
from userportrait.sqltext import Dialect, full_match, sql_str

Format = Literal["parquet", "csv", "ndjson", "json"]


@dataclass(frozen=True, slots=True)
class Fields:
    """The columns of one kind of input file (events, profiles): the required ones, every
    known one in order, and the time column, read into ``ts`` / ``ts_text`` (NULL when the
    file has no such column)."""

    required: tuple[str, ...]
    known: tuple[str, ...]
    time: str

    @property
    def text(self) -> tuple[str, ...]:
        return tuple(f for f in self.known if f != self.time)


EVENT_FIELDS: Final = Fields(REQUIRED, FIELDS, "ts")

#: The formats by file suffix (before an optional ``.gz``).
SUFFIXES: Final[dict[str, Format]] = {
    ".parquet": "parquet", ".pq": "parquet",
    ".csv": "csv",
    ".ndjson": "ndjson", ".jsonl": "ndjson",
    ".json": "json",
}  # fmt: skip

#: CSV delimiters tried on the header line, in this order (the first naming every required
#: column wins). Reading the header ourselves, not DuckDB's sniffer, keeps a malformed row
#: in the sniffed sample from changing how the header is read.
_DELIMITERS: Final = (",", "\t", ";", "|")
_scans = itertools.count()


@dataclass(frozen=True, slots=True)
class Source:
    path: Path
    format: Format
    columns: tuple[str, ...]  # the known fields present in the file
    line_offset: int  # add to the 1-based record number to get the file line
    #: SQL over the select's columns: the ts as text, for reject messages only. A column
    #: of text formats; for a typed Parquet column a cast of ``_ts_raw`` that only the
    #: rows needing it pay (the column ``ts_text`` costs a cast of every row).
    ts_text: str = "ts_text"
    #: SQL: the age as an integer when the file's column is an integer (``_age_int``),
    #: so that its rules need no text round trip; None: read ``age`` as text.
    age_int: str | None = None


def detect_format(path: Path) -> Format:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    fmt = SUFFIXES.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        known = ", ".join(sorted(SUFFIXES)) + " (optionally .gz)"
        raise InputError(
            f"{path}: unknown format {''.join(path.suffixes) or '(none)'}; use {known}"
        )
    if fmt == "json" and _first_char(path) != "[":
        fmt = "ndjson"
    return fmt


def _first_char(path: Path) -> str:
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
        while chunk := fh.read(4096):
            stripped = chunk.lstrip()
            if stripped:
                return stripped[0]
    return ""


def ts_from_text(expr: str, dialect: Dialect = "duckdb") -> str:
    """SQL: a text timestamp -> TIMESTAMPTZ (epoch s/ms, RFC 3339, naive = session tz; on
    Spark a TIMESTAMP, the session zone Asia/Shanghai): the texts ``rules.INT_TEXT`` and
    ``rules.TS_TEXT``, which the HTTP path (``ingest/records.py``) accepts alike."""
    t = f"trim({expr})"
    parsed = f"try_cast({t} AS TIMESTAMPTZ)" if dialect == "duckdb" else f"CAST({t} AS TIMESTAMP)"
    return (
        f"CASE WHEN {full_match(t, INT_TEXT, dialect)} THEN "
        + ts_from_int(f"CAST({t} AS BIGINT)", dialect)
        + f" WHEN {full_match(t, TS_TEXT, dialect)} THEN {parsed} END"
    )


#: Epoch milliseconds beyond this overflow Spark's microseconds (DuckDB: not a timestamp).
_MAX_EPOCH_MS: Final = (1 << 63) // 1000 - 1


def ts_from_int(expr: str, dialect: Dialect = "duckdb") -> str:
    """SQL: epoch seconds or milliseconds (by magnitude) -> TIMESTAMPTZ (Spark: TIMESTAMP)."""
    if dialect == "spark":
        return (
            f"CASE WHEN abs({expr}) >= {EPOCH_MS_FROM} THEN CASE WHEN abs({expr}) <= "
            f"{_MAX_EPOCH_MS} THEN timestamp_millis({expr}) END "
            f"ELSE timestamp_seconds({expr}) END"
        )
    return (
        f"timezone('UTC', CASE WHEN abs({expr}) >= {EPOCH_MS_FROM}"
        f" THEN try(epoch_ms({expr})) ELSE try(epoch_ms({expr} * 1000)) END)"
    )


def check_file(path: Path, shown: str | None = None) -> None:
    """Refuse an input that is not a file; the message names it as ``shown`` (a URI)."""
    if not path.exists():
        raise InputError(f"{shown or path}: no such file")
    if not path.is_file():
        raise InputError(f"{shown or path}: not a file")


def open_source(
    con: duckdb.DuckDBPyConnection, path: Path, fields: Fields = EVENT_FIELDS
) -> tuple[Source, str]:
    """Check ``path`` and return it with a SELECT yielding the standard columns."""
    check_file(path)
    fmt = detect_format(path)
    try:
        if fmt == "parquet":
            return _parquet(con, path, fields)
        if fmt == "csv":
            return _csv(con, path, fields)
        return _json_lines(con, path, fmt, fields)
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: cannot read as {fmt}: {first}") from None


def check_columns(path: Path, present: list[str], fields: Fields = EVENT_FIELDS) -> tuple[str, ...]:
    """The known columns of ``present`` (a file's, lower case), in ``fields.known`` order;
    InputError when a required one is missing."""
    missing = [c for c in fields.required if c not in present]
    if missing:
        raise InputError(
            f"{path}: missing required column(s) {', '.join(missing)}; "
            f"found {', '.join(present) or 'none'}"
        )
    return tuple(c for c in fields.known if c in present)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


_EPOCH_TYPES: Final = ("BIGINT", "INTEGER", "UBIGINT", "UINTEGER", "HUGEINT", "SMALLINT")
_INTEGER_TYPES: Final = (*_EPOCH_TYPES, "TINYINT", "USMALLINT", "UTINYINT", "UHUGEINT")


def _parquet(con: duckdb.DuckDBPyConnection, path: Path, fields: Fields) -> tuple[Source, str]:
    scan = f"read_parquet({sql_str(str(path))})"
    types = dict(
        con.execute(
            f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM {scan})"
        ).fetchall()
    )
    lowered = {name.lower(): name for name in types}
    columns = check_columns(path, list(lowered), fields)
    cols: list[str] = []
    ts_type = str(types[lowered[fields.time]]).upper() if fields.time in lowered else "NONE"
    ts_col = _quote(lowered.get(fields.time, ""))
    if ts_type == "NONE":  # an optional time column the file lacks
        ts_expr, ts_col = "CAST(NULL AS TIMESTAMPTZ)", "NULL"
    elif ts_type.startswith("TIMESTAMP WITH TIME ZONE"):
        ts_expr = ts_col
    elif ts_type.startswith("TIMESTAMP"):
        ts_expr = f"timezone('Asia/Shanghai', CAST({ts_col} AS TIMESTAMP))"
    elif ts_type in _EPOCH_TYPES:
        ts_expr = ts_from_int(f"CAST({ts_col} AS BIGINT)")
    else:
        ts_expr = ts_from_text(f"CAST({ts_col} AS VARCHAR)")
    cols.append(f"{ts_expr} AS ts")
    cols.append(f"CAST({ts_col} AS VARCHAR) AS ts_text")
    cols.append(f"{ts_col} AS _ts_raw")
    for f in fields.text:
        cols.append(
            f"CAST({_quote(lowered[f])} AS VARCHAR) AS {f}"
            if f in lowered
            else f"CAST(NULL AS VARCHAR) AS {f}"
        )
    age_int = None
    if "age" in fields.text and "age" in lowered and types[lowered["age"]] in _INTEGER_TYPES:
        cols.append(f"{_quote(lowered['age'])} AS _age_int")
        age_int = "_age_int"
    cols.append("CAST(NULL AS VARCHAR) AS _err")
    source = Source(path, "parquet", columns, 0, "CAST(_ts_raw AS VARCHAR)", age_int)
    return source, f"SELECT {', '.join(cols)} FROM {scan}"


def _csv(con: duckdb.DuckDBPyConnection, path: Path, fields: Fields) -> tuple[Source, str]:
    try:
        return _csv_read(con, path, path, fields)
    except duckdb.InvalidInputException:
        # DuckDB's strict reader refuses the whole file when its line ends are mixed (one
        # CRLF or bare CR in an LF file: "state machine reached an invalid state"); such
        # a file is read from a copy with every line end a LF.
        if not _has_cr(path):
            raise
    return _csv_read(con, path, _lf_copy(con, path), fields)


def _csv_read(
    con: duckdb.DuckDBPyConnection, path: Path, data: Path, fields: Fields
) -> tuple[Source, str]:
    """``path`` read from ``data`` (itself, or a copy with its line ends made LF)."""
    delim, names = read_csv_header(data, fields.required)
    lowered = {n.strip().lower(): f"c{i}" for i, n in enumerate(names)}
    columns = check_columns(path, list(lowered), fields)
    types = ", ".join(f"'c{i}': 'VARCHAR'" for i in range(len(names)))
    scan = (
        f"read_csv({sql_str(str(data))}, header=true, delim={sql_str(delim)}, quote='\"', "
        f"escape='\"', auto_detect=false, strict_mode=true, columns={{{types}}}, "
        f"max_line_size={rules.MAX_LINE_BYTES}"
    )
    reads = [f"count(c{i})" for i in range(len(names))]
    rows = _rows(con, scan, reads, 1, len(names), delim, _blank_lines(data))
    ts_col = lowered.get(fields.time, "CAST(NULL AS VARCHAR)")
    cols = [f"{ts_from_text(ts_col)} AS ts", f"{ts_col} AS ts_text"]
    for f in fields.text:
        cols.append(f"{lowered[f]} AS {f}" if f in lowered else f"CAST(NULL AS VARCHAR) AS {f}")
    cols.append("_reject AS _err")
    return Source(path, "csv", columns, 1), f"SELECT {', '.join(cols)} FROM {rows}"


def _has_cr(path: Path) -> bool:
    try:
        with open_bytes(path) as fh:
            return any(b"\r" in chunk for chunk in iter(lambda: fh.read(1 << 20), b""))
    except (EOFError, OSError, gzip.BadGzipFile):
        return False


def _lf_copy(con: duckdb.DuckDBPyConnection, path: Path) -> Path:
    """A temporary copy of the CSV ``path`` (uncompressed) whose line ends are all LF: a
    CRLF counts as one line end and a bare CR as one too, as Spark's text reader and
    Python's universal newlines read them (a CR inside a quoted field of such a file
    becomes a LF). The copy is removed once ``con`` is gone."""
    fd, name = tempfile.mkstemp(prefix="userportrait-", suffix=".csv")
    copy = Path(name)
    weakref.finalize(con, copy.unlink, missing_ok=True)
    with open_bytes(path) as src, os.fdopen(fd, "wb") as out:
        held = b""  # a CR at a chunk's end: its LF may open the next chunk
        while chunk := src.read(1 << 20):
            chunk = held + chunk
            held = b"\r" if chunk.endswith(b"\r") else b""
            chunk = chunk[: len(chunk) - len(held)]
            out.write(chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n"))
        out.write(b"\n" if held else b"")
    return copy


def _blank_lines(path: Path) -> list[int]:
    """The numbers of the empty lines after the header: DuckDB skips them, so they are put
    back as rows (``Reject.BLANK_LINE``, never counted) to keep the rows after them on their
    line. (Lines inside a quoted field are counted too: a blank one there is misread.)"""
    try:
        with open_bytes(path) as fh:
            return [n for n, line in enumerate(fh, start=1) if line in (b"\n", b"\r\n") and n > 1]
    except (EOFError, OSError, gzip.BadGzipFile):
        return []  # an unreadable .gz: DuckDB's own pass reports it


def open_bytes(path: Path) -> Any:
    """``path`` opened for reading bytes (gunzipped when it ends in ``.gz``)."""
    return gzip.open(path, "rb") if path.suffix.lower() == ".gz" else path.open("rb")


def read_csv_header(path: Path, required: tuple[str, ...] = REQUIRED) -> tuple[str, list[str]]:
    """``csv_header`` of the first line of the file ``path``."""
    with open_bytes(path) as fh:
        return csv_header(fh.readline(rules.MAX_LINE_BYTES), required)


def csv_header(first: bytes, required: tuple[str, ...] = REQUIRED) -> tuple[str, list[str]]:
    """The delimiter and the column names, from the first line (the first delimiter that
    names every ``required`` column)."""
    text = first.decode("utf-8", errors="replace").removeprefix("\ufeff").rstrip("\r\n")
    text = text.split("\r", 1)[0]  # a file with lone CRs is one "line" here: its first part
    for delim in _DELIMITERS:
        names = next(csv.reader([text], delimiter=delim), [])
        if all(r in {n.strip().lower() for n in names} for r in required):
            return delim, names
    return ",", next(csv.reader([text]), [])


def _plain_lines(path: Path) -> bool:
    """Whether every line is UTF-8 and shorter than ``MAX_LINE_BYTES`` (else DuckDB's
    plain read fails the whole file, and the slower read that rejects lines is needed)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    run = 0  # bytes of the current line so far
    try:
        with open_bytes(path) as fh:
            while chunk := fh.read(1 << 20):
                decoder.decode(chunk)
                parts = chunk.split(b"\n")
                longest = max([run + len(parts[0]), *(len(p) for p in parts[1:])])
                if longest >= rules.MAX_LINE_BYTES:
                    return False
                run = len(parts[-1]) + (run if len(parts) == 1 else 0)
        decoder.decode(b"", final=True)
    except (UnicodeDecodeError, EOFError, OSError, gzip.BadGzipFile):
        return False  # an unreadable .gz: DuckDB's own pass reports it
    return True


def _rows(
    con: duckdb.DuckDBPyConnection,
    scan: str,
    reads: list[str],
    offset: int,
    width: int,
    delim: str | None,
    blanks: list[int] | None = None,
) -> str:
    """``scan`` (a ``read_csv(...`` call missing its ``)``) plus ``_reject``, a reason or NULL.

    The rows DuckDB cannot read are found with one pass that reads every column
    (``reads``); then the readable ones are numbered and each reject put back in its
    place: the k-th readable row comes after the rejects that had fewer than k readable
    rows before them. Row n of the result is row n of the file (one line per row, as the
    line numbers of every format assume).
    """
    n = next(_scans)
    rejects, gaps = f"_rejects_{n}", f"_gaps_{n}"
    con.execute(
        f"SELECT {', '.join(reads)} FROM {scan}, ignore_errors=true, store_rejects=true, "
        f"rejects_table='{rejects}', rejects_scan='_reject_scans_{n}')"
    ).fetchall()
    found = con.execute(f"SELECT count(*) FROM {rejects}").fetchone()
    if (not found or not found[0]) and not blanks:
        return f"(SELECT *, CAST(NULL AS VARCHAR) AS _reject FROM {scan}))"
    # The reason of each refused row, worded by ``csv_rows`` (so ``spark ingest`` words it
    # the same), from the row's error types and, for a wrong width, its text.
    found_rows = con.execute(
        f"SELECT line - {offset}, list(error_type), any_value(CASE WHEN error_type IN "
        "('TOO MANY COLUMNS', 'MISSING COLUMNS') THEN csv_line END) "
        f"FROM {rejects} GROUP BY line ORDER BY line"
    ).fetchall()
    positions = [int(r[0]) for r in found_rows] + [b - offset for b in blanks or ()]
    reasons = [
        row_reason(r[1], r[2], width, delim)
        if delim is not None
        # NDJSON read as one column: a wrong width means a \x01 byte, not JSON
        else row_reason(r[1], None, width, ",").replace(Reject.NOT_CLOSED, Reject.NOT_JSON)
        for r in found_rows
    ] + [Reject.BLANK_LINE.text()] * len(blanks or ())
    rows = list(zip(positions, reasons, strict=True))
    register_rows(con, f"{gaps}_rows", ["_pos", "_reject"], rows, ["BIGINT", "VARCHAR"])
    con.execute(
        f"CREATE TEMP TABLE {gaps} AS SELECT _pos, _reject, "
        f"_pos - row_number() OVER (ORDER BY _pos) AS _before FROM {gaps}_rows"
    )
    con.execute(f"DROP TABLE {gaps}_rows")
    # store_rejects here too: without it DuckDB 1.x drops every row after a quote error
    # (``"a"x``), where with it those rows are read, as the first pass counted them.
    readable = (
        f"SELECT * EXCLUDE (_k), _k + (SELECT count(*) FROM {gaps} WHERE _before < _k) AS _pos "
        f"FROM (SELECT row_number() OVER () AS _k, * FROM {scan}, ignore_errors=true, "
        f"store_rejects=true, rejects_table='{rejects}_2', rejects_scan='_reject_scans_{n}_2'))"
    )
    return (
        f"(SELECT * EXCLUDE (_pos) FROM ({readable} UNION ALL BY NAME "
        f"SELECT _pos, _reject FROM {gaps}) ORDER BY _pos)"
    )


def _json_lines(
    con: duckdb.DuckDBPyConnection, path: Path, fmt: Format, fields: Fields
) -> tuple[Source, str]:
    if fmt == "json":
        scan = (
            "(SELECT CAST(json AS VARCHAR) AS line, CAST(NULL AS VARCHAR) AS _reject "
            f"FROM read_json({sql_str(str(path))}, format='array', records=false))"
        )
    else:
        lines = (
            f"read_csv({sql_str(str(path))}, columns={{'line': 'VARCHAR'}}, delim='\\x01', "
            f"quote='', escape='', header=false, auto_detect=false, max_line_size={rules.MAX_LINE_BYTES}"
        )
        if _plain_lines(path):
            scan = f"(SELECT *, CAST(NULL AS VARCHAR) AS _reject FROM {lines}))"
        else:
            scan = _rows(con, lines, ["count(line)"], 0, 1, None)
    known = fields.known
    paths = ", ".join(sql_str(f"$.{f}") for f in known)
    keys = con.execute(
        f"SELECT DISTINCT unnest(json_keys(line)) FROM {scan} "
        "WHERE json_valid(line) AND json_type(line) = 'OBJECT' LIMIT 1000"
    ).fetchall()
    present = [k[0] for k in keys]
    columns = check_columns(path, present, fields) if present else fields.required
    t = known.index(fields.time) + 1
    cols = [f"{ts_from_text(f'v[{t}] ->> ' + sql_str('$'))} AS ts", f"v[{t}] ->> '$' AS ts_text"]
    # v holds the fields in ``known`` order; JSON null reads as SQL NULL (absent).
    for i, f in enumerate(known, start=1):
        if f != fields.time:
            cols.append(f"v[{i}] ->> '$' AS {f}")
    bad_type = " ".join(
        f"WHEN json_type(v[{i}]) IN {BAD_JSON_TYPES} THEN "
        f"{Reject.WRONG_TYPE.sql(field=repr(f), kind=f'lower(json_type(v[{i}]))')}"
        for i, f in enumerate(known, start=1)
    )
    cols.append(
        "CASE WHEN _reject IS NOT NULL THEN _reject "
        f"WHEN line IS NULL OR trim(line) = '' THEN {Reject.BLANK_LINE.sql()} "
        f"WHEN NOT json_valid(line) THEN {Reject.NOT_JSON.sql()} "
        f"WHEN json_type(line) <> 'OBJECT' THEN {Reject.NOT_OBJECT.sql()} "
        f"{bad_type} END AS _err"
    )
    inner = (
        f"SELECT line, _reject, CASE WHEN json_valid(line) AND json_type(line) = 'OBJECT' "
        f"THEN json_extract(line, [{paths}]) END AS v FROM {scan}"
    )
    return Source(path, fmt, columns, 0), f"SELECT {', '.join(cols)} FROM ({inner})"
