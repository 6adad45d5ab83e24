"""The ``spark`` engine: the ``sql`` engine's one query, in Spark SQL over the lake.

Same attribution as every engine (SPEC §3): per user the latest event carrying each
attribute in the window, ties to the larger value (struct order), first day over all
data; the rows are decoded by ``sql.counts_from_rows`` and shaped by ``portrait/``.
Only the dialect differs. Needs the ``spark`` extra (``userportrait.spark.session``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from userportrait.engine.profile_sql import filled_users_sql
from userportrait.engine.sql import counts_from_rows
from userportrait.portrait.counts import PortraitCounts
from userportrait.portrait.query import PortraitQuery
from userportrait.spark.session import lake_uri, read_lake, spark_session, temp_name
from userportrait.store.lake import DIM_COLUMNS, Lake

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def portrait_sql(view: str, query: PortraitQuery, profiles: str | None = None) -> str:
    """Exact portrait counts per (dimension, value, is_new) over the events in ``view``,
    gaps filled from the latest profile records in the view ``profiles``."""
    b, e = query.begin.isoformat(), query.end.isoformat()
    users = f"({filled_users_sql('users', profiles, query.end)})" if profiles else "users"
    latest = ", ".join(
        f"(max(named_struct('t', ts, 'v', {col})) FILTER (WHERE {col} IS NOT NULL)).v AS {dim}"
        for dim, col in DIM_COLUMNS.items()
    )
    sets = ", ".join(f"(is_new, {dim})" for dim in DIM_COLUMNS)
    return f"""
    WITH first_seen AS (SELECT openid, min(day) AS first_day FROM {view} GROUP BY openid),
    users AS (
        SELECT openid, {latest} FROM {view}
        WHERE day BETWEEN DATE '{b}' AND DATE '{e}' GROUP BY openid
    ),
    flagged AS (
        SELECT u.*, f.first_day >= DATE '{b}' AS is_new FROM {users} u JOIN first_seen f USING (openid)
    )
    SELECT {", ".join(DIM_COLUMNS)}, is_new,
           {", ".join(f"grouping({d}) AS g_{d}" for d in DIM_COLUMNS)}, count(*) AS n
    FROM flagged
    GROUP BY GROUPING SETS ({sets})
    """


class SparkEngine:
    name = "spark"

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self.spark: SparkSession = spark_session(lake.settings)

    def run_portrait(self, query: PortraitQuery) -> PortraitCounts:
        end = query.end.isoformat()
        files = [f for f in self.lake.files(query.appid) if f.day <= end]
        if not files:
            return PortraitCounts.empty()
        events = read_lake(self.spark, self.lake, files)
        view = temp_name("portrait_events")
        events.createOrReplaceTempView(view)
        profiles = self.lake.catalog.profile_files(query.appid)
        pview = temp_name("portrait_profiles") if profiles else None
        if pview:
            uris = [lake_uri(self.lake, f.path) for f in profiles]
            self.spark.read.parquet(*uris).createOrReplaceTempView(pview)
        try:
            rows = self.spark.sql(portrait_sql(view, query, pview)).collect()
        finally:
            self.spark.catalog.dropTempView(view)
            if pview:
                self.spark.catalog.dropTempView(pview)
        return counts_from_rows(rows)

    def close(self) -> None:
        pass  # the session lives as long as the process (one SparkContext per JVM)
