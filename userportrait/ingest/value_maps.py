"""The value maps: region, gender, platform, device and UA, as tables DuckDB joins onto a batch.

Only distinct raw values go through Python (a few thousand per file), so the rules stay
written once in ``portrait/normalize.py`` and ``portrait/devices.py`` and millions of rows
are mapped by a hash join. Ages map in SQL (``age_value``, ``age_id_sql``), from the
buckets of ``portrait/dims.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

import duckdb

from userportrait import sqlrows
from userportrait.portrait import devices, normalize
from userportrait.portrait.dims import AGE_BUCKET_UPPER
from userportrait.sqlrows import register_rows
from userportrait.sqltext import Dialect

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
        f"(SELECT DISTINCT device FROM {src} LIMIT {sqlrows.MAX_ENUM_VALUES + 1})"
    ).fetchall()
    if len(rows) > sqlrows.MAX_ENUM_VALUES:
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
#: files from before the client fields lack them anyway (readers take them as NULL).
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


def age_value(expr: str) -> str:
    """SQL: the age text as a whole number (NULL when absent or invalid)."""
    return f"CAST(try_cast(trim({expr}) AS DOUBLE) AS SMALLINT)"


def age_id_sql(age: str) -> str:
    """SQL: the ``ages`` bucket id of a SMALLINT age (mirrors dims.age_bucket)."""
    whens = " ".join(f"WHEN {age} <= {upper} THEN {bucket}" for upper, bucket in AGE_BUCKET_UPPER)
    return f"CAST(CASE WHEN {age} IS NULL THEN NULL {whens} ELSE 6 END AS TINYINT)"


def _text(value: object) -> str | None:
    return None if value is None else str(value)
