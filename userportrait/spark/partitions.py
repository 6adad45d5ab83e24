"""Day partitions of the derived state built by Spark, for ``spark build``.

The heavy part runs on the cluster: per (day, user) the day's winning value of every
dimension (the packed-key ``max`` of ``store/state/partitions.py``: microseconds since
the day's midnight, then the value id or the device's rank in string order), the match
against the user dictionary and dense uids for new users (ordered by first day, then
openid, as the DuckDB builder numbers them). The driver then reads one day at a time and
hands it to the same code that writes the state (``store/state/app_update.py``), so state
written by Spark and by the embedded store is the same, file for file.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from userportrait.portrait.dims import DIMS, ID_DIMS
from userportrait.spark.session import lake_uri, read_lake, temp_name
from userportrait.store.durable import atomic_write
from userportrait.store.lake import DIM_COLUMNS, Lake
from userportrait.store.state.app_update import PartitionSource
from userportrait.store.state.days import SQL_TYPES, VALUE_DTYPES, day_number
from userportrait.store.state.manifest import AppState
from userportrait.store.state.partitions import ID_BITS, RANK_BITS
from userportrait.store.windows import DayPart

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@dataclass(slots=True)
class BuildTimes:
    """Where a build's wall time went (seconds)."""

    spark_s: float = 0.0  # in Spark jobs: the executors' work (the driver waits)
    total_s: float = 0.0

    @property
    def driver_s(self) -> float:
        """The rest: the driver reading Spark's output and writing the state."""
        return max(self.total_s - self.spark_s, 0.0)


def spark_partitions(spark: SparkSession, times: BuildTimes | None = None) -> PartitionSource:
    """A ``PartitionSource`` for ``catch_up`` that builds on ``spark``."""
    spent = times if times is not None else BuildTimes()

    def make(lake: Lake, appid: str, app: AppState, app_dir: Path, version: int) -> Any:
        return SparkPartitionBuilder(spark, lake, appid, app, app_dir, version, spent)

    return make


class SparkPartitionBuilder:
    """``PartitionBuilder``'s job on Spark: one Spark pass for all the days asked for."""

    def __init__(
        self,
        spark: SparkSession,
        lake: Lake,
        appid: str,
        app: AppState,
        app_dir: Path,
        version: int,
        times: BuildTimes,
    ) -> None:
        self.spark = spark
        self.times = times
        self.lake = lake
        self.appid = appid
        self.app = app
        self.dir = app_dir
        self.version = version
        self.devices: dict[str, int] = {}
        # Spark writes its intermediate results here; the driver reads them back.
        self.work = lake.root / "_tmp" / f"spark-{uuid.uuid4().hex[:12]}"

    def __enter__(self) -> SparkPartitionBuilder:
        if self.app.devices:
            table = pq.ParquetFile(self.dir / self.app.devices).read()
            names = table.column("device").to_pylist()
            self.devices = dict(zip(names, table.column("id").to_pylist(), strict=True))
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.work, ignore_errors=True)

    def build(self, days: list[str], *, keyed: str | None = None) -> Iterator[DayPart]:
        wanted = set(days)
        files = [
            f for f in self.lake.catalog.files(self.appid, upto=self.version) if f.day in wanted
        ]
        if not files:
            return
        began = time.perf_counter()
        spark = self.spark
        events = temp_name("build_events")
        read_lake(spark, self.lake, files).createOrReplaceTempView(events)
        # Devices of these days in string order (Python's str order is DuckDB's and
        # Spark's: UTF-8 bytes); new models get the next ids in that order.
        present = sorted(
            r[0]
            for r in spark.sql(
                f"SELECT DISTINCT device FROM {events} WHERE device IS NOT NULL"
            ).collect()
        )
        for name in present:
            if name not in self.devices:
                self.devices[name] = len(self.devices) + 1
        id_of_rank = np.array([0, *(self.devices[d] for d in present)], np.int64)
        ranks = temp_name("build_ranks")
        spark.createDataFrame(
            [(d, r) for r, d in enumerate(present, start=1)], "device STRING, r BIGINT"
        ).createOrReplaceTempView(ranks)
        rel = "(unix_micros(e.ts) - unix_micros(CAST(e.day AS TIMESTAMP)))"
        winners = ", ".join(
            f"max({rel} * {1 << ID_BITS} + e.{col}) AS {dim}"
            for dim, col in DIM_COLUMNS.items()
            if dim != "devices"
        )
        daily_dir = self.work / "daily"
        spark.sql(
            f"SELECT e.day, e.openid, {winners}, "
            f"max({rel} * {1 << RANK_BITS} + k.r) AS drank "
            f"FROM {events} e LEFT JOIN {ranks} k ON k.device = e.device GROUP BY e.day, e.openid"
        ).write.parquet(lake_uri(self.lake, daily_dir))
        matched = temp_name("build_matched")
        daily = spark.read.parquet(lake_uri(self.lake, daily_dir))
        if self.app.users:
            known = spark.read.parquet(*(lake_uri(self.lake, self.dir / f) for f in self.app.users))
            daily.join(known, "openid", "left").createOrReplaceTempView(matched)
        else:
            daily.selectExpr("*", "CAST(NULL AS BIGINT) AS uid").createOrReplaceTempView(matched)
        fresh_dir = self.work / "fresh"
        firsts = temp_name("build_firsts")
        spark.sql(
            f"SELECT openid, min(day) AS first FROM {matched} WHERE uid IS NULL GROUP BY openid"
        ).createOrReplaceTempView(firsts)
        # Dense uids by (first day, openid) without a global sort: the number of new
        # users per first day (a few hundred rows) gives each day's offset.
        per_day = spark.sql(f"SELECT first, count(*) FROM {firsts} GROUP BY first").collect()
        n = self.app.n_users
        offsets, start = [], n
        for first, count in sorted(per_day, key=lambda r: r[0]):
            offsets.append((first, start))
            start += int(count)
        added = start - n
        if added:
            base = temp_name("build_offsets")
            spark.createDataFrame(offsets, "first DATE, base BIGINT").createOrReplaceTempView(base)
            spark.sql(
                f"SELECT f.openid, o.base + row_number() OVER (PARTITION BY f.first "
                f"ORDER BY f.openid) - 1 AS uid FROM {firsts} f JOIN {base} o USING (first)"
            ).write.parquet(lake_uri(self.lake, fresh_dir))
            fresh = spark.read.parquet(lake_uri(self.lake, fresh_dir))
        else:
            fresh = spark.createDataFrame([], "openid STRING, uid BIGINT")
        # The winner's value id and its time (the key's low and high bits), as DuckDB's
        # builder gives them: the newest day's times let a later flush merge in.
        values = ", ".join(
            f"CAST(COALESCE(d.{dim} % {1 << ID_BITS}, 0) AS {SQL_TYPES[dim]}) AS {dim}, "
            f"COALESCE(d.{dim} div {1 << ID_BITS}, -1) AS {dim}_t"
            for dim in ID_DIMS
        )
        fresh_view = temp_name("build_fresh")
        fresh.createOrReplaceTempView(fresh_view)
        days_dir = self.work / "days"
        spark.sql(
            f"SELECT CAST(d.day AS STRING) AS day, COALESCE(d.uid, f.uid) AS uid, {values}, "
            f"COALESCE(d.drank % {1 << RANK_BITS}, 0) AS drank, "
            f"COALESCE(d.drank div {1 << RANK_BITS}, -1) AS devices_t FROM {matched} d "
            f"LEFT JOIN {fresh_view} f ON d.uid IS NULL AND f.openid = d.openid"
        ).repartition("day").write.partitionBy("day").parquet(lake_uri(self.lake, days_dir))
        for view in (events, ranks, matched, firsts, fresh_view):
            spark.catalog.dropTempView(view)
        self.times.spark_s += time.perf_counter() - began
        if added:
            self._write_users(fresh_dir, n, added)
        for day_dir in sorted(days_dir.glob("day=*")):
            yield self._day_part(day_dir, id_of_rank)

    def _write_users(self, fresh_dir: Path, n: int, added: int) -> None:
        """The new users as one dictionary part, as the DuckDB builder writes it."""
        table = _read_parts(fresh_dir).sort_by("uid")
        assert table.num_rows == added
        schema = pa.schema(  # DuckDB's COPY of the same table: NOT NULL columns
            [pa.field("openid", pa.string(), False), pa.field("uid", pa.uint32(), False)]
        )
        table = pa.table(
            [table.column("openid"), table.column("uid").cast(pa.uint32())], schema=schema
        )
        part = f"users/u{self.version}_{n}.parquet"
        atomic_write(self.dir / part, lambda fh: pq.write_table(table, fh, compression="zstd"))
        self.app.users.append(part)
        self.app.n_users = n + added

    def _day_part(self, day_dir: Path, id_of_rank: np.ndarray[Any, Any]) -> DayPart:
        table = _read_parts(day_dir)
        uid = table.column("uid").to_numpy()
        order = np.argsort(uid, kind="stable")
        values = {d: table.column(d).to_numpy()[order].astype(VALUE_DTYPES[d]) for d in ID_DIMS}
        values["devices"] = id_of_rank[table.column("drank").to_numpy()[order]].astype(
            VALUE_DTYPES["devices"]
        )
        keys = {d: table.column(f"{d}_t").to_numpy()[order].astype(np.int64) for d in DIMS}
        day = day_dir.name.split("=", 1)[1]
        return DayPart(
            day_number(day), uid[order].astype(np.uint32), {d: values[d] for d in DIMS}, keys
        )

    def finish(self) -> None:
        """Write the device dictionary (as ``PartitionBuilder.finish`` does)."""
        if not self.devices:
            return
        self.app.devices = f"devices.b{self.version}.parquet"
        names = sorted(self.devices, key=self.devices.__getitem__)
        table = pa.table(
            {
                "device": pa.array(names, pa.string()),
                "id": pa.array(range(1, len(names) + 1), pa.int32()),
            }
        )
        atomic_write(self.dir / self.app.devices, lambda fh: pq.write_table(table, fh))


def _read_parts(directory: Path) -> pa.Table:
    parts = [pq.ParquetFile(p).read() for p in sorted(directory.glob("*.parquet"))]
    return pa.concat_tables(parts)
