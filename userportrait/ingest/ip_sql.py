"""The ``ip`` field in ingest SQL (DuckDB and Spark): prefix, region and the two maps.

A dotted IPv4 text becomes its /24 key (``address >> 8``) in SQL; the distinct keys of a
batch go through ``IpDatabase.lookup_keys`` (numpy, all at once) and come back as
``ip_key_map``. Any other non-blank text (IPv6, ``::ffff:1.2.3.4``, garbage) is few
and goes through ``ipregion.map_texts`` as ``ip_text_map``. The event's own province or
city wins over both (``region_columns``). The rules live in ``portrait/ipregion.py``;
the reference engine re-derives from ``ip_prefix`` with the official binding
(``tests/test_engines_agree.py`` keeps the two equal).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

import duckdb
import numpy as np
import pyarrow as pa

from userportrait.ingest.normalize_sql import Dialect, full_match
from userportrait.portrait import ipregion

_OCTET: Final = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
#: What Python's ``ipaddress`` reads as an IPv4 address (no leading zeros, ASCII digits).
V4_PATTERN: Final = rf"{_OCTET}(\.{_OCTET}){{3}}"

KEY_MAP_SCHEMA: Final = ["ip_key", "province_id", "city_id"]
TEXT_MAP_SCHEMA: Final = ["ip_text", "ip_prefix", "province_id", "city_id"]

KeyRow = tuple[int, int | None, int | None]
TextRow = tuple[str, str | None, int | None, int | None]


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
    """SQL: the distinct keys, and texts that are not dotted IPv4, of view ``src``."""
    key = ip_key("ip", dialect)
    return (
        f"SELECT DISTINCT {key} AS ip_key, CASE WHEN {key} IS NULL THEN {ip_text('ip')} END "
        f"AS ip_text FROM {src} WHERE {ip_text('ip')} IS NOT NULL"
    )


def map_rows(
    rows: Iterable[Sequence[object]], db: ipregion.IpDatabase | None
) -> tuple[list[KeyRow], list[TextRow]]:
    """The rows of ``distinct_sql`` -> the rows of ``ip_key_map`` and ``ip_text_map``."""
    keys: list[int] = []
    texts: list[str] = []
    for key, text in rows:
        if key is not None:
            keys.append(int(str(key)))
        elif text is not None:
            texts.append(str(text))
    key_rows: list[KeyRow] = []
    if keys and db is not None:
        province, city = db.lookup_keys(np.array(keys, dtype=np.int64))
        key_rows = [
            (k, None if p < 0 else p, None if c < 0 else c)
            for k, p, c in zip(keys, province.tolist(), city.tolist(), strict=True)
        ]
    text_rows = [(t, prefix, p, c) for t, prefix, (p, c) in ipregion.map_texts(texts, db)]
    return key_rows, text_rows


def joins(
    c: str,
    dialect: Dialect = "duckdb",
    key_map: str = "ip_key_map",
    text_map: str = "ip_text_map",
) -> str:
    """SQL: the two LEFT JOINs onto the row alias ``c`` (aliases ``ik``, ``it``)."""
    return (
        f"LEFT JOIN {key_map} ik ON ik.ip_key = {ip_key(f'{c}.ip', dialect)} "
        f"LEFT JOIN {text_map} it ON it.ip_text = {ip_text(f'{c}.ip')} "
    )


def region_columns(c: str, r: str, store_raw_ip: bool, dialect: Dialect = "duckdb") -> str:
    """SQL: ``province_id, city_id, ip_prefix, ip`` given the region map alias ``r``.

    The event's own region wins: the IP's only when the event has neither (SPEC §3).
    """
    from_ip = f"{r}.province_id IS NULL AND {r}.city_id IS NULL"
    text_type = "STRING" if dialect == "spark" else "VARCHAR"
    raw = ip_text(f"{c}.ip") if store_raw_ip else f"CAST(NULL AS {text_type})"
    return (
        f"CASE WHEN {from_ip} THEN coalesce(ik.province_id, it.province_id) "
        f"ELSE {r}.province_id END AS province_id, "
        f"CASE WHEN {from_ip} THEN coalesce(ik.city_id, it.city_id) "
        f"ELSE {r}.city_id END AS city_id, "
        f"CASE WHEN ik.ip_key IS NOT NULL THEN {ip_v4_prefix(f'{c}.ip')} "
        f"ELSE it.ip_prefix END AS ip_prefix, {raw} AS ip"
    )


def register_maps(
    con: duckdb.DuckDBPyConnection, src: str, has_ip: bool, db: ipregion.IpDatabase | None
) -> None:
    """Create tables ``ip_key_map`` and ``ip_text_map`` for view ``src`` (empty without ip)."""
    rows = con.execute(distinct_sql(src)).fetchall() if has_ip else []
    key_rows, text_rows = map_rows(rows, db)
    _register(con, "ip_key_map", KEY_MAP_SCHEMA, key_rows, _KEY_TYPES)
    _register(con, "ip_text_map", TEXT_MAP_SCHEMA, text_rows, _TEXT_TYPES)


_KEY_TYPES: Final = [pa.int64(), pa.int16(), pa.int32()]
_TEXT_TYPES: Final = [pa.string(), pa.string(), pa.int16(), pa.int32()]


def _register(
    con: duckdb.DuckDBPyConnection,
    name: str,
    columns: list[str],
    rows: Sequence[tuple[object, ...]],
    types: list[pa.DataType],
) -> None:
    arrays = [pa.array([r[i] for r in rows], type=t) for i, t in enumerate(types)]
    con.register(f"{name}_arrow", pa.Table.from_arrays(arrays, names=columns))
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {name}_arrow")
    con.unregister(f"{name}_arrow")
