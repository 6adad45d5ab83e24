"""The ``ip`` field in ingest SQL (DuckDB and Spark): one map from ip text to region.

Only the distinct trimmed ip texts of a batch are worked on (``ip_distinct``): a dotted
IPv4 text gets its /24 key (``address >> 8``) and prefix in SQL, the distinct keys go
through ``IpDatabase.lookup_keys`` (numpy, all at once, ``ip_key_map``), and the few other
texts (IPv6, ``::ffff:1.2.3.4``, garbage) through ``ipregion.map_texts`` in Python
(``ip_text_map``). ``ip_map`` joins them: (ip_text, ip_prefix, province_id, city_id),
joined back onto the rows by the trimmed text, so a row costs one hash probe. The event's
own province or city wins (``region_columns``). The rules live in ``portrait/ipregion.py``;
the reference engine re-derives from ``ip_prefix`` with the official binding
(``tests/test_engines_agree.py``, ``tests/test_spark.py`` keep them equal).
"""

from __future__ import annotations

from typing import Any, Final

import duckdb
import numpy as np

from userportrait.portrait import ipregion
from userportrait.sqlrows import register_rows
from userportrait.sqltext import Dialect, full_match

_OCTET: Final = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
#: What Python's ``ipaddress`` reads as an IPv4 address (no leading zeros, ASCII digits).
V4_PATTERN: Final = rf"{_OCTET}(\.{_OCTET}){{3}}"

#: Spark's schemas of the two small maps (DuckDB gets the same types from Arrow).
KEY_MAP_SPARK: Final = "ip_key BIGINT, province_id SMALLINT, city_id INT"
TEXT_MAP_SPARK: Final = "ip_text STRING, ip_prefix STRING, province_id SMALLINT, city_id INT"


def ip_text(expr: str) -> str:
    """SQL: the trimmed ip text, NULL when absent or blank."""
    return f"nullif(trim({expr}), '')"


def ip_key(expr: str, dialect: Dialect = "duckdb") -> str:
    """SQL: the /24 key of a dotted IPv4 text, else NULL."""
    t = f"trim({expr})"
    part = [f"CAST(split_part({t}, '.', {i}) AS BIGINT)" for i in (1, 2, 3)]
    return (
        f"CASE WHEN {full_match(t, V4_PATTERN, dialect)} "
        f"THEN {part[0]} * 65536 + {part[1]} * 256 + {part[2]} END"
    )


def ip_v4_prefix(expr: str) -> str:
    """SQL: ``a.b.c.0/24`` of a dotted IPv4 text (use where ``ip_key`` is not NULL)."""
    t = f"trim({expr})"
    return (
        f"split_part({t}, '.', 1) || '.' || split_part({t}, '.', 2) || '.' || "
        f"split_part({t}, '.', 3) || '.0/24'"
    )


def distinct_sql(src: str, dialect: Dialect = "duckdb") -> str:
    """SQL: ``ip_distinct``, the distinct non-blank trimmed ip texts of ``src`` and their
    /24 key (NULL when not a dotted IPv4 text)."""
    return (
        f"SELECT ip_text, {ip_key('ip_text', dialect)} AS ip_key FROM "
        f"(SELECT DISTINCT trim(ip) AS ip_text FROM {src} WHERE trim(ip) <> '') d"
    )


def map_sql(distinct: str, key_map: str, text_map: str) -> str:
    """SQL: ``ip_map`` (ip_text, ip_prefix, province_id, city_id) from the three tables."""
    return (
        "SELECT d.ip_text, CASE WHEN d.ip_key IS NOT NULL "
        f"THEN {ip_v4_prefix('d.ip_text')} ELSE it.ip_prefix END AS ip_prefix, "
        "coalesce(ik.province_id, it.province_id) AS province_id, "
        "coalesce(ik.city_id, it.city_id) AS city_id "
        f"FROM {distinct} d LEFT JOIN {key_map} ik ON ik.ip_key = d.ip_key "
        f"LEFT JOIN {text_map} it ON it.ip_text = d.ip_text"
    )


def key_columns(
    keys: np.ndarray[Any, Any], db: ipregion.IpDatabase | None
) -> dict[str, np.ndarray[Any, Any]]:
    """``ip_key_map``'s columns: distinct /24 keys -> province and city ids (-1 = absent).
    Plain numpy, which DuckDB scans as it is (a pyarrow table would import pandas: 0.5 s
    of every fresh ``ingest`` process of a file with an ``ip``)."""
    keys = np.asarray(keys, dtype=np.int64)
    if db is None or not len(keys):
        keys = keys[:0]
        province = city = np.zeros(0, dtype=np.int64)
    else:
        province, city = db.lookup_keys(keys)
    return {
        "ip_key": keys,
        "province_id": np.asarray(province, np.int64),
        "city_id": np.asarray(city, np.int64),
    }


def key_rows(
    keys: np.ndarray[Any, Any], db: ipregion.IpDatabase | None
) -> list[tuple[int, int | None, int | None]]:
    """``key_columns`` as rows, absent ids as None (for Spark)."""
    cols = key_columns(keys, db)
    return [
        (k, p if p >= 0 else None, c if c >= 0 else None)
        for k, p, c in zip(*(cols[n].tolist() for n in cols), strict=True)
    ]


def text_rows(
    texts: list[str], db: ipregion.IpDatabase | None
) -> list[tuple[str, str | None, int | None, int | None]]:
    """``ip_text_map``'s rows: texts that are not dotted IPv4 -> prefix and ids (Python)."""
    return [(t, p, ids[0], ids[1]) for t, p, ids in ipregion.map_texts(texts, db)]


def join(c: str, ip_map: str = "ip_map") -> str:
    """SQL: the LEFT JOIN of ``ip_map`` (alias ``im``) onto the row alias ``c``."""
    return f"LEFT JOIN {ip_map} im ON im.ip_text = trim({c}.ip) "


def region_columns(c: str, r: str, store_raw_ip: bool, dialect: Dialect = "duckdb") -> str:
    """SQL: ``province_id, city_id, ip_prefix, ip`` given the region map alias ``r``.

    The event's own region wins: the IP's only when the event has neither (docs/semantics.md).
    """
    from_ip = f"{r}.province_id IS NULL AND {r}.city_id IS NULL"
    text_type = "STRING" if dialect == "spark" else "VARCHAR"
    raw = ip_text(f"{c}.ip") if store_raw_ip else f"CAST(NULL AS {text_type})"
    return (
        f"CASE WHEN {from_ip} THEN im.province_id ELSE {r}.province_id END AS province_id, "
        f"CASE WHEN {from_ip} THEN im.city_id ELSE {r}.city_id END AS city_id, "
        f"im.ip_prefix AS ip_prefix, {raw} AS ip"
    )


def register_maps(
    con: duckdb.DuckDBPyConnection, src: str, has_ip: bool, db: ipregion.IpDatabase | None
) -> None:
    """Create table ``ip_map`` for view ``src`` (empty when the source has no ip)."""
    where = "" if has_ip else " LIMIT 0"
    con.execute(f"CREATE OR REPLACE TEMP TABLE ip_distinct AS {distinct_sql(src)}{where}")
    keys = con.execute(
        "SELECT DISTINCT ip_key FROM ip_distinct WHERE ip_key IS NOT NULL"
    ).fetchnumpy()["ip_key"]
    texts = [
        r[0] for r in con.execute("SELECT ip_text FROM ip_distinct WHERE ip_key IS NULL").fetchall()
    ]
    con.register("ip_key_ids", key_columns(keys, db))
    try:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE ip_key_map AS SELECT ip_key, "
            "CAST(CASE WHEN province_id >= 0 THEN province_id END AS SMALLINT) AS province_id, "
            "CAST(CASE WHEN city_id >= 0 THEN city_id END AS INTEGER) AS city_id FROM ip_key_ids"
        )
    finally:
        con.unregister("ip_key_ids")
    register_rows(
        con,
        "ip_text_map",
        ["ip_text", "ip_prefix", "province_id", "city_id"],
        text_rows(texts, db),
        ["VARCHAR", "VARCHAR", "SMALLINT", "INTEGER"],
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE ip_map AS "
        + map_sql("ip_distinct", "ip_key_map", "ip_text_map")
    )
    for table in ("ip_distinct", "ip_key_map", "ip_text_map"):
        con.execute(f"DROP TABLE {table}")
