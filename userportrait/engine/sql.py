"""The ``sql`` engine: one DuckDB query over the appid's raw lake files (the naive baseline).

It deduplicates users and picks their latest values at query time, so it costs a scan of
every event up to the window's end; the default ``incremental`` engine answers from the
incremental store instead. Kept as a second, independent implementation (tests, bench).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from userportrait.engine.profile_sql import filled_users_sql
from userportrait.portrait.counts import AudienceCounts, PortraitCounts
from userportrait.portrait.dims import ID_DIMS, Dim
from userportrait.portrait.query import PortraitQuery
from userportrait.sqltext import sql_str
from userportrait.store.lake import DIM_COLUMNS as _COLUMNS
from userportrait.store.lake import Lake
from userportrait.store.profiles import profile_paths


def portrait_sql(files: list[str], query: PortraitQuery, profiles: Sequence[str] = ()) -> str:
    """Exact portrait counts per (dimension, value, is_new) for ``files`` (SPEC §3), gaps
    filled from the latest records of the ``profiles`` files."""
    listing = "[" + ", ".join(sql_str(p) for p in files) + "]"
    users = "users"
    if profiles:
        scan = "read_parquet([" + ", ".join(sql_str(p) for p in profiles) + "])"
        users = f"({filled_users_sql('users', scan, query.end)})"
    b, e = query.begin.isoformat(), query.end.isoformat()
    # Latest event carrying the attribute; at equal ts the larger value wins (struct order).
    latest = ", ".join(
        f"max({{'t': ts, 'v': {col}}}) FILTER (WHERE {col} IS NOT NULL).v AS {dim}"
        for dim, col in _COLUMNS.items()
    )
    sets = ", ".join(f"(is_new, {dim})" for dim in _COLUMNS)
    return f"""
    WITH ev AS (
        SELECT * FROM read_parquet({listing}, hive_partitioning=true,
                                   hive_types={{'appid': VARCHAR, 'day': DATE}})
    ),
    first_seen AS (SELECT openid, min(day) AS first_day FROM ev GROUP BY openid),
    users AS (
        SELECT openid, {latest} FROM ev
        WHERE day BETWEEN DATE '{b}' AND DATE '{e}' GROUP BY openid
    )
    SELECT {", ".join(_COLUMNS)}, first_day >= DATE '{b}' AS is_new,
           {", ".join(f"GROUPING({d}) AS g_{d}" for d in _COLUMNS)}, count(*) AS n
    FROM {users} uf JOIN first_seen USING (openid)
    GROUP BY GROUPING SETS ({sets})
    """


class SQLEngine:
    name = "sql"

    def __init__(self, lake: Lake) -> None:
        self.lake = lake

    def run_portrait(self, query: PortraitQuery) -> PortraitCounts:
        end = query.end.isoformat()
        files = [str(self.lake.root / f.path) for f in self.lake.files(query.appid) if f.day <= end]
        if not files:
            return PortraitCounts.empty()
        profiles = profile_paths(self.lake, query.appid)
        con = self.lake.connect()
        try:
            rows = con.execute(portrait_sql(files, query, profiles)).fetchall()
        finally:
            con.close()
        return counts_from_rows(rows)

    def close(self) -> None:
        pass


def counts_from_rows(rows: Iterable[Sequence[Any]]) -> PortraitCounts:
    """Rows of the grouping-sets query (dims, is_new, GROUPING per dim, n) as counts.

    Shared by every engine that runs the ``portrait_sql`` shape (``sql``, ``spark``)."""
    counts = PortraitCounts.empty()
    dims = list(_COLUMNS)
    for row in rows:
        is_new, n = row[len(dims)], row[-1]
        groupings = list(row[len(dims) + 1 : -1])
        dim = dims[groupings.index(0)]
        value = row[dims.index(dim)]
        for audience in (counts.active, counts.new) if is_new else (counts.active,):
            _add(audience, dim, value, n)
    return counts


def _add(audience: AudienceCounts, dim: str, value: object, n: int) -> None:
    if dim == "devices":
        key = value if isinstance(value, str) else None
        audience.devices[key] = audience.devices.get(key, 0) + n
    else:
        d: Dim = dim  # type: ignore[assignment]
        vid = 0 if value is None else int(value)  # type: ignore[call-overload]
        audience.ids[d][vid] = audience.ids[d].get(vid, 0) + n


__all__ = ["ID_DIMS", "SQLEngine", "counts_from_rows", "portrait_sql"]
