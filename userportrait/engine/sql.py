"""The ``sql`` engine: one DuckDB query over the appid's raw lake files (the naive baseline).

It deduplicates users and picks their latest values at query time, so it costs a scan of
every event up to the window's end; the default ``incremental`` engine answers from the
incremental store instead. Kept as a second, independent implementation (tests, bench).
The query is ``engine/portrait_sql.py``'s, in the DuckDB dialect.
"""

from __future__ import annotations

from typing import Any

from userportrait.engine.portrait_sql import LakeSQL, MakeSQL
from userportrait.portrait.query import PortraitQuery
from userportrait.sqltext import sql_list
from userportrait.store.lake import Lake
from userportrait.store.profiles import profile_paths
from userportrait.store.retention import first_seen_sql


class SQLEngine(LakeSQL):
    name = "sql"

    def __init__(self, lake: Lake) -> None:
        self.lake = lake

    def _rows(self, query: PortraitQuery, make: MakeSQL) -> list[Any] | None:
        """The rows of ``make``'s query over the app's lake (None: no files)."""
        end = query.end.isoformat()
        files = [str(self.lake.root / f.path) for f in self.lake.files(query.appid) if f.day <= end]
        if not files:
            return None
        events = (
            f"read_parquet({sql_list(files)}, hive_partitioning=true, "
            "hive_types={'appid': VARCHAR, 'day': DATE})"
        )
        paths = profile_paths(self.lake, query.appid)
        profiles = f"read_parquet({sql_list(paths)})" if paths else None
        con = self.lake.connect()
        try:
            kept = first_seen_sql(self.lake, query.appid)
            return con.execute(make(events, query, profiles, "duckdb", kept)).fetchall()
        finally:
            con.close()

    def data_version(self) -> int | None:
        return None  # each query reads the catalog afresh: never behind it

    def close(self) -> None:
        pass
