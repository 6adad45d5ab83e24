"""Turn the shared Python normalisers into lookup tables DuckDB joins onto a batch.

Only distinct raw values go through Python (a few thousand per file), so the rules stay
written once in ``portrait/normalize.py`` and millions of rows are mapped by a hash join.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal, cast

import duckdb

from userportrait.portrait import devices, normalize, rules
from userportrait.portrait.dims import AGE_BUCKET_UPPER, MAX_AGE
from userportrait.portrait.rules import Reject
from userportrait.sqltext import sql_str

#: The SQL dialects the input rules are written for (DuckDB here; Spark in ``spark/``).
Dialect = Literal["duckdb", "spark"]

Region = tuple[str | None, str | None, int | None, int | None]
Mapped = tuple[str | None, int | None]


def register_maps(con: duckdb.DuckDBPyConnection, src: str) -> None:
    """Create tables ``region_map``, ``gender_map``, ``platform_map`` for view ``src``."""
    rows = con.execute(f"SELECT {DISTINCT_VALUES_SQL.format(src=src)}").fetchall()
    regions, genders, platforms = map_values(rows)
    register_rows(
        con,
        "region_map",
        ["province", "city", "province_id", "city_id"],
        regions,
        ["VARCHAR", "VARCHAR", "SMALLINT", "INTEGER"],
        out=("province", "city"),
    )
    text, tiny = "VARCHAR", "TINYINT"
    register_rows(
        con, "gender_map", ["gender", "gender_id"], genders, [text, tiny], out=("gender",)
    )
    register_rows(
        con, "platform_map", ["platform", "platform_id"], platforms, [text, tiny], out=("platform",)
    )


def register_device_map(con: duckdb.DuckDBPyConnection, src: str) -> bool:
    """Table ``device_text_map`` (device, device_value_out) for a file without client fields:
    each distinct raw device with the lake's device (``client_sql``'s trimmed text) as a
    ``raw_type``. False (no table) when the devices are too many for an ENUM: then the
    rows trim their own, which costs less than a join."""
    rows = con.execute(
        "SELECT device, nullif(trim(device), '') FROM "
        f"(SELECT DISTINCT device FROM {src} LIMIT {MAX_ENUM_VALUES + 1})"
    ).fetchall()
    if len(rows) > MAX_ENUM_VALUES:
        return False
    text = "VARCHAR"
    register_rows(
        con, "device_text_map", ["device", "device_value"], rows, [text, text], ("device_value",)
    )
    return True


#: The distinct raw values to normalise (one grouping set per map; the same in both dialects).
DISTINCT_VALUES_SQL: Final = (
    "province, city, gender, platform, GROUPING(province) AS g_region, "
    "GROUPING(gender) AS g_gender FROM {src} "
    "GROUP BY GROUPING SETS ((province, city), (gender), (platform))"
)


def map_values(
    rows: Iterable[Sequence[object]],
) -> tuple[list[Region], list[Mapped], list[Mapped]]:
    """The rows of ``DISTINCT_VALUES_SQL`` through the shared Python normalisers."""
    regions: list[Region] = []
    genders: list[Mapped] = []
    platforms: list[Mapped] = []
    for province, city, gender, platform, g_region, g_gender in rows:
        if g_region == 0:
            pid, cid = normalize.resolve_region(_text(province), _text(city))
            regions.append((_text(province), _text(city), pid, cid))
        elif g_gender == 0:
            genders.append((_text(gender), normalize.normalize_gender(_text(gender))))
        else:
            platforms.append((_text(platform), normalize.normalize_platform(_text(platform))))
    return regions, genders, platforms


#: The distinct client tuples (``portrait/devices.py``) of view ``checked``: one grouping set
#: per map, the compact UA (``ua_compact``) in place of the UA.
CLIENT_VALUES_SQL: Final = (
    "device, model, brand, system, platform, ua_compact, GROUPING(device) AS g_device "
    "FROM {src} GROUP BY GROUPING SETS ((device, model, brand, ua_compact), "
    "(platform, system, ua_compact, brand))"
)
Client = tuple[str | None, str | None, str | None, str | None, object]


def map_client_values(rows: Iterable[Sequence[object]]) -> tuple[list[Client], list[Client]]:
    """The rows of ``CLIENT_VALUES_SQL`` through ``devices.resolve_device`` / ``_platform``."""
    device_rows: list[Client] = []
    platform_rows: list[Client] = []
    for device, model, brand, system, platform, ua, g_device in rows:
        d, m, b, s, p, u = (_text(v) for v in (device, model, brand, system, platform, ua))
        if g_device == 0:
            device_rows.append((d, m, b, u, devices.resolve_device(d, m, b, u)))
        else:
            platform_rows.append((p, s, u, b, devices.resolve_platform(p, s, u, b)))
    return device_rows, platform_rows


def register_client_maps(con: duckdb.DuckDBPyConnection, src: str) -> None:
    """Tables ``device_map`` and ``client_platform_map`` for view ``src`` (with ``ua_compact``)."""
    rows = con.execute(f"SELECT {CLIENT_VALUES_SQL.format(src=src)}").fetchall()
    device_rows, platform_rows = map_client_values(rows)
    text = "VARCHAR"
    register_rows(
        con,
        "device_map",
        ["device", "model", "brand", "ua_compact", "device_name"],
        device_rows,
        [text, text, text, text, text],
        out=("device", "model", "brand", "ua_compact", "device_name"),
    )
    register_rows(
        con,
        "client_platform_map",
        ["platform", "system", "ua_compact", "brand", "platform_id"],
        platform_rows,
        [text, text, text, text, "TINYINT"],
        out=("platform", "system"),
    )


#: ``CLIENT_COLUMNS_SQL`` from the client maps (aliases ``dm``, ``cp``), typed for the write.
CLIENT_COLUMNS_OUT_SQL: Final = (
    ", dm.device_out AS device_raw, dm.model_out AS model_raw, dm.brand_out AS brand_raw, "
    "cp.system_out AS system_raw, dm.ua_compact_out AS ua_compact"
)

#: The lake's client columns (docs/storage.md), from view ``events`` (alias ``c``), written
#: only by batches whose file has client fields: five all-NULL columns would cost a batch
#: without them ~20% more memory in the partitioned write (40 day buffers), and lake
#: files from before issue 17 lack them anyway (readers take them as NULL).
CLIENT_COLUMNS_SQL: Final = (
    ", c.device AS device_raw, c.model AS model_raw, c.brand AS brand_raw, "
    "c.system AS system_raw, c.ua_compact"
)


def client_sql(
    client: bool,
    eq: str,
    maps: tuple[str, str, str] = ("platform_map", "device_map", "client_platform_map"),
) -> tuple[str, str, str]:
    """SQL (device, platform_id, joins) of view ``checked`` (alias ``c``).

    ``eq`` is the dialect's NULL-safe equality; ``maps`` the names of the platform map,
    the device map and the client platform map. Without client fields, ``device`` is the
    trimmed ``device`` and the platform the one-column map's (the same answers as
    ``devices.resolve_*`` with the client fields absent, at the cost of one join).
    """
    platform_map, device_map, client_map = maps
    if not client:
        return (
            "nullif(trim(c.device), '')",
            "p.platform_id",
            f"LEFT JOIN {platform_map} p ON c.platform {eq} p.platform",
        )
    on_device = " AND ".join(
        f"c.{k} {eq} dm.{k}" for k in ("device", "model", "brand", "ua_compact")
    )
    on_platform = " AND ".join(
        f"c.{k} {eq} cp.{k}" for k in ("platform", "system", "ua_compact", "brand")
    )
    return (
        "dm.device_name",
        "cp.platform_id",
        f"LEFT JOIN {device_map} dm ON {on_device} LEFT JOIN {client_map} cp ON {on_platform}",
    )


def ua_map_sql(src: str, dialect: Dialect = "duckdb") -> str:
    """SQL: each distinct raw UA of ``src`` (``ua_raw``) with its compact form.

    The regexes run once per distinct UA and a hash join brings the result back: 20-30x
    less than compacting every row of a file whose clients send few distinct UAs, and no
    more work when every UA differs.
    """
    return (
        f"SELECT ua_raw, {ua_compact_sql('ua_raw', dialect)} AS ua_compact FROM "
        f"(SELECT DISTINCT user_agent AS ua_raw FROM {src} WHERE user_agent IS NOT NULL) d"
    )


def with_ua_sql(checked: str, ua_map: str | None) -> str:
    """SQL: the rows of view ``checked`` plus ``ua_compact`` (from table ``ua_map``; NULL
    without a UA column). A view of its own, so that ``checked`` keeps the file's row
    order, which reject line numbers count on."""
    if ua_map is None:
        return f"SELECT *, CAST(NULL AS STRING) AS ua_compact FROM {checked}"
    return (
        f"SELECT c.*, u.ua_compact FROM {checked} c LEFT JOIN {ua_map} u ON c.user_agent = u.ua_raw"
    )


def ua_compact_sql(expr: str, dialect: Dialect = "duckdb") -> str:
    """SQL of ``devices.compact_user_agent``: the UA's first comment and the marks after it."""
    comment, marks = devices.UA_COMMENT_PATTERN, devices.UA_MARK_PATTERN
    if dialect == "spark":  # Spark string literals take escapes
        comment, marks = comment.replace("\\", "\\\\"), marks.replace("\\", "\\\\")
    rest = f"regexp_replace({expr}, '{comment}', '')"  # anchored: at most one match
    if dialect == "spark":
        found = f"slice(regexp_extract_all({rest}, '{marks}', 0), 1, {devices.UA_MARKS})"
        joined = f"array_join({found}, ' ')"
    else:
        found = f"regexp_extract_all({rest}, '{marks}')[1:{devices.UA_MARKS}]"
        joined = f"array_to_string({found}, ' ')"
    return (
        f"CASE WHEN nullif(trim({expr}), '') IS NOT NULL THEN '(' || "
        f"left(regexp_extract({expr}, '{comment}', 1), {devices.UA_COMMENT_CHARS}) || ')' || "
        f"coalesce(' ' || nullif({joined}, ''), '') END"
    )


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def register_rows(
    con: duckdb.DuckDBPyConnection,
    name: str,
    columns: list[str],
    rows: Sequence[tuple[object, ...]],
    types: list[str],
    out: tuple[str, ...] = (),
) -> None:
    """Table ``name`` of ``rows`` (``types``: the columns' SQL types); each column in
    ``out`` also as ``<column>_out``, typed by ``raw_type``: a text the lake keeps, handed
    back by the join the batch makes anyway.

    The columns go in as list parameters and come out by ``unnest`` (zipped): pyarrow's
    ``pa.array`` would import pandas, 0.5 s of every fresh ``ingest`` process."""
    values = [[r[i] for r in rows] for i in range(len(columns))]
    picked = ", ".join(
        f"unnest(${i + 1}::{t}[]) AS {c}"
        for i, (c, t) in enumerate(zip(columns, types, strict=True))
    )
    extra = "".join(
        f", CAST({c} AS {raw_type(cast('list[str | None]', values[columns.index(c)]))}) AS {c}_out"
        for c in out
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT *{extra} FROM (SELECT {picked})", values
    )


#: Most distinct values a text column of the lake is written as an ENUM with (above, VARCHAR).
MAX_ENUM_VALUES: Final = 2000
#: Most characters of SQL literals a batch's shortcut may spell out (an ENUM's values, the
#: appids breaking a rule): hostile files can hold long values; past this, the plain way.
MAX_LITERAL_CHARS: Final = 1 << 18


def raw_type(values: Iterable[str | None]) -> str:
    """The DuckDB type to write a low-cardinality text column of the lake with.

    DuckDB's Parquet writer dictionary-encodes an ENUM column ~4x faster than the same
    strings (it has the dictionary already); the file holds the same string column
    (RLE_DICTIONARY), read back as plain text. But every row group repeats the whole
    dictionary, so it pays only for a few values: above ``MAX_ENUM_VALUES``, VARCHAR.
    The values go in sorted (byte) order, so that an ENUM sorts as its text does.
    """
    distinct = sorted({v for v in values if v is not None}, key=lambda v: v.encode())
    if not distinct or len(distinct) > MAX_ENUM_VALUES:
        return "VARCHAR"
    if sum(len(v) for v in distinct) > MAX_LITERAL_CHARS:
        return "VARCHAR"
    return f"ENUM({', '.join(sql_str(v) for v in distinct)})"


def age_value(expr: str) -> str:
    """SQL: the age text as a whole number (NULL when absent or invalid)."""
    return f"CAST(try_cast(trim({expr}) AS DOUBLE) AS SMALLINT)"


def age_id_sql(age: str) -> str:
    """SQL: the ``ages`` bucket id of a SMALLINT age (mirrors dims.age_bucket)."""
    whens = " ".join(f"WHEN {age} <= {upper} THEN {bucket}" for upper, bucket in AGE_BUCKET_UPPER)
    return f"CAST(CASE WHEN {age} IS NULL THEN NULL {whens} ELSE 6 END AS TINYINT)"


def full_match(expr: str, pattern: str, dialect: Dialect = "duckdb") -> str:
    """SQL: ``expr`` matches the whole of ``pattern`` (a pattern without quotes)."""
    if "'" in pattern:
        raise ValueError(f"pattern needs quoting: {pattern}")
    if dialect == "spark":
        escaped = pattern.replace("\\", "\\\\")  # Spark string literals take escapes
        return f"({expr} RLIKE '^(?:{escaped})$')"
    return f"regexp_full_match({expr}, '{pattern}')"


#: Above this many distinct appids in a file, the appid rules run on every row.
MAX_APPID_VALUES: Final = 1000


@dataclass(frozen=True, slots=True)
class Appids:
    """The appid rules decided once per distinct appid of a batch (``appids_of``): a file
    holds few appids, and a regex per row costs ~1 s per 12 M rows.

    ``failing`` maps each rule of ``appid_rules`` to the raw appids that break it;
    ``trimmed``: every appid equals its ``trim`` (the rows need no trim).
    """

    failing: dict[str, tuple[str, ...]]
    trimmed: bool


def too_long_sql(expr: str, dialect: Dialect = "duckdb") -> str:
    """SQL: the text ``expr`` has more than ``MAX_FIELD_CHARS`` characters. In DuckDB the
    byte length (stored with the string) decides first: counting characters reads every
    byte, and a string of at most that many bytes has at most that many characters."""
    chars = f"length({expr}) > {rules.MAX_FIELD_CHARS}"
    if dialect == "spark":
        return chars
    return f"(strlen({expr}) > {rules.MAX_FIELD_CHARS} AND {chars})"


def blank_sql(expr: str, dialect: Dialect = "duckdb") -> str:
    """SQL: the non-NULL text ``expr`` is empty once trimmed. In DuckDB only a text that
    starts with a space (``trim`` strips ' ' and the other Unicode space separators, which
    are not ASCII) can be, so most rows are decided without building the trimmed copy."""
    if dialect == "spark":
        return f"trim({expr}) = ''"
    return (
        f"({expr} = '' OR ((starts_with({expr}, ' ') OR {expr} >= chr(128)) AND trim({expr}) = ''))"
    )


def trimmed_sql(expr: str) -> str:
    """DuckDB SQL: ``trim(expr)``, skipped for the usual text that has nothing to trim (an
    ASCII text has no other space separator than ' '): the check reads the text once and
    allocates nothing, the trim copies it."""
    return (
        f"CASE WHEN strlen({expr}) = length({expr}) AND NOT starts_with({expr}, ' ') "
        f"AND NOT ends_with({expr}, ' ') THEN {expr} ELSE trim({expr}) END"
    )


def appid_rules(expr: str, dialect: Dialect = "duckdb") -> dict[str, str]:
    """SQL: the appid rules of ``reason_sql`` on a non-NULL appid, by name, in their order."""
    return {
        "missing": f"trim({expr}) = ''",
        "too_long": f"length({expr}) > {rules.MAX_FIELD_CHARS}",
        "invalid": f"NOT {full_match(f'trim({expr})', rules.APPID_PATTERN, dialect)}",
        "reserved": f"lower(trim({expr})) = '{rules.RESERVED_APPID}'",
    }


def appids_of(con: duckdb.DuckDBPyConnection, src: str) -> Appids | None:
    """The rules of ``appid_rules`` applied to the distinct appids of ``src`` (None: too
    many; ``src`` may be a small table of them)."""
    checks = appid_rules("a")
    rows = con.execute(
        f"SELECT a, a = trim(a), {', '.join(checks.values())} FROM "
        f"(SELECT DISTINCT appid AS a FROM {src} WHERE appid IS NOT NULL "
        f"LIMIT {MAX_APPID_VALUES + 1})"
    ).fetchall()
    if len(rows) > MAX_APPID_VALUES:
        return None
    failing = {name: tuple(r[0] for r in rows if r[2 + i]) for i, name in enumerate(checks)}
    if sum(len(a) for values in failing.values() for a in values) > MAX_LITERAL_CHARS:
        return None
    return Appids(failing, all(r[1] for r in rows))


def reason_sql(
    dialect: Dialect = "duckdb",
    ts_text: str = "ts_text",
    age_int: str | None = None,
    appids: Appids | None = None,
) -> str:
    """SQL: why a standard-columns row is rejected, or NULL when it is accepted.

    The rules are written once; ``dialect`` changes only the spelling of the regex match
    and the instant literals (Spark's TIMESTAMP is an instant, like DuckDB's TIMESTAMPTZ).
    The rest specialise the SQL to a source without changing a verdict: ``ts_text`` is the
    SQL of the ts text (``Source.ts_text``), ``age_int`` the age as an integer when the
    file types it so (``Source.age_int``), and ``appids`` the appid rules decided per
    distinct appid (``appids_of``).
    """
    instant = "TIMESTAMP" if dialect == "spark" else "TIMESTAMPTZ"
    appid_rule = appid_rules("appid", dialect)
    if appids is not None:
        # A rule no appid of the batch breaks drops out; the others test membership.
        appid_rule = {
            name: f"appid IN ({', '.join(sql_str(a) for a in failing)})" if failing else ""
            for name, failing in appids.failing.items()
        }
    lengths = [
        appid_rule["too_long"] if f == "appid" else too_long_sql(f, dialect)
        for f in rules.LENGTH_CHECKED
    ]
    too_long = " ".join(
        f"WHEN {check} THEN {Reject.TOO_LONG.sql(field=repr(f))}"
        for f, check in zip(rules.LENGTH_CHECKED, lengths, strict=True)
        if check
    )
    missing = (
        f"appid IS NULL OR {appid_rule['missing']}" if appid_rule["missing"] else "appid IS NULL"
    )
    invalid = (
        appid_rule["invalid"] and f"WHEN {appid_rule['invalid']} THEN {Reject.APPID_INVALID.sql()} "
    )
    reserved = (
        appid_rule["reserved"]
        and f"WHEN {appid_rule['reserved']} THEN {Reject.APPID_RESERVED.sql()} "
    )
    if age_int is None:
        age_num = "try_cast(trim(age) AS DOUBLE)"
        age_bad = (
            "age IS NOT NULL AND trim(age) <> '' AND ("
            f"{age_num} IS NULL OR {age_num} <> floor({age_num}) "
            f"OR {age_num} < 0 OR {age_num} > {MAX_AGE})"
        )
        age_text = "age"
    else:  # an integer needs no parse (and its text only in the message)
        age_bad = f"{age_int} < 0 OR {age_int} > {MAX_AGE}"
        age_text = f"CAST({age_int} AS VARCHAR)"
    return (
        "CASE WHEN _err IS NOT NULL THEN _err "
        f"WHEN {missing} THEN {Reject.APPID_MISSING.sql()} "
        f"{too_long} "
        f"{invalid}"
        f"{reserved}"
        f"WHEN openid IS NULL OR {blank_sql('openid', dialect)} THEN {Reject.OPENID_MISSING.sql()} "
        # ts is NULL whenever its text is blank; testing ts first spares turning every
        # typed Parquet timestamp into text.
        f"WHEN ts IS NULL AND ({ts_text} IS NULL OR trim({ts_text}) = '') "
        f"THEN {Reject.TS_MISSING.sql()} "
        f"WHEN ts IS NULL THEN {Reject.TS_INVALID.sql(value=ts_text)} "
        f"WHEN ts < {instant} '{rules.TS_FIRST}' OR ts >= {instant} '{rules.TS_END}' "
        f"THEN {Reject.TS_RANGE.sql(value=ts_text)} "
        f"WHEN {age_bad} THEN {Reject.AGE_INVALID.sql(value=age_text)} "
        "END"
    )
