"""SQL text helpers shared by the store, the engines and ingestion (DuckDB dialect)."""

from __future__ import annotations

from typing import Final, Literal

#: The SQL dialects the rules and the portrait query are written in: DuckDB, and Spark SQL
#: (``spark/``, ``engine/portrait_sql.py``).
Dialect = Literal["duckdb", "spark"]

#: Asia/Shanghai has been UTC+8 all year since China's last daylight-saving change
#: (1991-09-15): from this day on an instant's Shanghai day and time of day are integer
#: arithmetic, ~4x cheaper per row than a time-zone conversion. Earlier instants take the
#: conversion (DuckDB evaluates a CASE branch only for its rows).
FIXED_OFFSET_FROM: Final = "1992-01-01"
_OFFSET_US: Final = 8 * 3600 * 1_000_000
_US_PER_DAY: Final = 86_400_000_000


def sql_str(text: str) -> str:
    """A SQL string literal holding ``text``."""
    return "'" + text.replace("'", "''") + "'"


def sql_list(paths: list[str]) -> str:
    """A DuckDB list literal of file paths, for ``read_parquet([...])``."""
    return "[" + ", ".join(sql_str(p) for p in paths) + "]"


def shanghai_day_sql(ts: str) -> str:
    """SQL: the Asia/Shanghai calendar day of the TIMESTAMPTZ ``ts``."""
    return (
        f"CASE WHEN {ts} >= TIMESTAMPTZ '{FIXED_OFFSET_FROM} 00:00:00+08' "
        f"THEN DATE '1970-01-01' + CAST((epoch_us({ts}) + {_OFFSET_US}) // {_US_PER_DAY} "
        f"AS INTEGER) ELSE CAST(timezone('Asia/Shanghai', {ts}) AS DATE) END"
    )


def shanghai_time_of_day_sql(ts: str, day: str) -> str:
    """SQL: microseconds from the Shanghai midnight of ``day`` (the DATE of ``ts``) to ``ts``."""
    return (
        f"CASE WHEN {day} >= DATE '{FIXED_OFFSET_FROM}' "
        f"THEN (epoch_us({ts}) + {_OFFSET_US}) % {_US_PER_DAY} "
        f"ELSE epoch_us({ts}) - epoch_us(CAST({day} AS TIMESTAMPTZ)) END"
    )


def full_match(expr: str, pattern: str, dialect: Dialect = "duckdb") -> str:
    """SQL: ``expr`` matches the whole of ``pattern`` (a pattern without quotes)."""
    if "'" in pattern:
        raise ValueError(f"pattern needs quoting: {pattern}")
    if dialect == "spark":
        escaped = pattern.replace("\\", "\\\\")  # Spark string literals take escapes
        return f"({expr} RLIKE '^(?:{escaped})$')"
    return f"regexp_full_match({expr}, '{pattern}')"


def trimmed_sql(expr: str) -> str:
    """DuckDB SQL: ``trim(expr)``, skipped for the usual text that has nothing to trim (an
    ASCII text has no other space separator than ' '): the check reads the text once and
    allocates nothing, the trim copies it."""
    return (
        f"CASE WHEN strlen({expr}) = length({expr}) AND NOT starts_with({expr}, ' ') "
        f"AND NOT ends_with({expr}, ' ') THEN {expr} ELSE trim({expr}) END"
    )
