"""``spark build``: the derived state the server answers from, with Spark doing the heavy part.

The update policy is the embedded store's own (``store/state/catching_up.catch_up``): the same
catch-up over the batches the state has not seen, the same head, window table and
manifest; only the day partitions come from Spark (``spark/partitions.py``). So a state
built here is read, and later updated, by the embedded store as if it had built it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from userportrait.spark.partitions import BuildTimes, spark_partitions

__all__ = ["BuildTimes", "spark_build"]
from userportrait.store.lake import Lake
from userportrait.store.state import Manifest, catch_up
from userportrait.store.state.app_update import Progress, no_progress
from userportrait.store.state.catching_up import remove_state

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def spark_build(
    lake: Lake,
    spark: SparkSession,
    progress: Progress = no_progress,
    rebuild: bool = False,
    times: BuildTimes | None = None,
) -> Manifest:
    """Bring the state up to the catalog (from scratch with ``rebuild``); returns the
    manifest, whose ``failed`` names the apps that could not be updated. ``times``, when
    given, gets the split of the wall time."""
    times = times if times is not None else BuildTimes()
    start = time.perf_counter()
    try:
        with lake.write_lock():
            if rebuild:
                remove_state(lake)
            return catch_up(lake, progress, spark_partitions(spark, times))
    finally:
        times.total_s += time.perf_counter() - start
