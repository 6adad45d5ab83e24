"""One SparkSession per test process (issue 15): ``local[2]``, few shuffle partitions, no UI.

Every Spark test is in the xdist group ``spark`` (``--dist loadgroup``), so a parallel run
starts one JVM, not one per worker. Without the ``spark`` extra the tests are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

SPARK = pytest.mark.xdist_group("spark")


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    pytest.importorskip("pyspark", reason="the spark extra is not installed")
    from pyspark.sql import SparkSession

    from userportrait.spark.session import SQL_CONF

    warehouse = tmp_path_factory.mktemp("spark-warehouse")
    builder = (
        SparkSession.builder.master("local[2]")
        .appName("userportrait-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.sql.warehouse.dir", str(warehouse))
        .config("spark.driver.memory", "1g")
        .config("spark.sql.adaptive.enabled", "true")
    )
    for key, value in SQL_CONF.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
