"""Python rows into DuckDB tables, typed for the lake: ``register_rows`` and ``raw_type``.

Shared by ingestion (the value maps, the IP map, CSV rejects put back in place); the SQL
text helpers are beside it in ``sqltext.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Final, cast

from userportrait.sqltext import sql_str

if TYPE_CHECKING:
    import duckdb


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
