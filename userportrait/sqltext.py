"""SQL text helpers shared by the store, the engines and ingestion (DuckDB dialect)."""

from __future__ import annotations


def sql_str(text: str) -> str:
    """A SQL string literal holding ``text``."""
    return "'" + text.replace("'", "''") + "'"


def sql_list(paths: list[str]) -> str:
    """A DuckDB list literal of file paths, for ``read_parquet([...])``."""
    return "[" + ", ".join(sql_str(p) for p in paths) + "]"
