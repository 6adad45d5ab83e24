"""The ``spark`` engine: the ``sql`` engine's one query, in Spark SQL over the lake.

The query is ``engine/portrait_sql.py``'s in the Spark dialect, over temporary views of
the appid's lake and profile files; the rows are decoded by ``portrait_sql.counts_from_rows``
and shaped by ``portrait/``. Needs the ``spark`` extra (``userportrait.spark.session``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from userportrait.engine.portrait_sql import LakeSQL, MakeSQL
from userportrait.portrait.query import PortraitQuery
from userportrait.spark.session import lake_uri, read_lake, spark_session, temp_name
from userportrait.store.lake import Lake

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


class SparkEngine(LakeSQL):
    name = "spark"

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self.spark: SparkSession = spark_session(lake.settings)

    def _rows(self, query: PortraitQuery, make: MakeSQL) -> list[Any] | None:
        """The rows of ``make``'s query over the app's lake (None: no files)."""
        end = query.end.isoformat()
        files = [f for f in self.lake.files(query.appid) if f.day <= end]
        if not files:
            return None
        events = read_lake(self.spark, self.lake, files)
        view = temp_name("portrait_events")
        events.createOrReplaceTempView(view)
        profiles = self.lake.catalog.profile_files(query.appid)
        pview = temp_name("portrait_profiles") if profiles else None
        if pview:
            uris = [lake_uri(self.lake, f.path) for f in profiles]
            self.spark.read.parquet(*uris).createOrReplaceTempView(pview)
        kept = self.lake.catalog.retention_of(query.appid)
        fview = temp_name("portrait_first_seen") if kept and kept.first_seen else None
        if fview and kept and kept.first_seen:  # first days an expiry kept (store/expire.py)
            uri = lake_uri(self.lake, kept.first_seen)
            self.spark.read.parquet(uri).createOrReplaceTempView(fview)
        try:
            return list(self.spark.sql(make(view, query, pview, "spark", fview)).collect())
        finally:
            for name in (view, pview, fview):
                if name:
                    self.spark.catalog.dropTempView(name)

    def data_version(self) -> int | None:
        return None  # each query reads the catalog afresh: never behind it

    def close(self) -> None:
        pass  # the session lives as long as the process (one SparkContext per JVM)
