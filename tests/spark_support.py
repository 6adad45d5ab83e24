"""One SparkSession per test process (issue 15): ``local[2]``, few shuffle partitions, no UI.

Every Spark test is in the xdist group ``spark`` (``--dist loadgroup``), so a parallel run
starts one JVM, not one per worker: the tests of this module's users are marked
``SPARK``, and any test parametrized with ``engine="spark"`` (the engine-agreement and
semantics tests) gets the mark and the ``spark`` fixture here. Without the ``spark``
extra those tests are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

SPARK = pytest.mark.xdist_group("spark")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("engine") == "spark":
            item.add_marker(SPARK)
            if "spark" not in item.fixturenames:  # type: ignore[attr-defined]
                item.fixturenames.append("spark")  # type: ignore[attr-defined]
        _group_nodeid(config, item)


def _group_nodeid(config: pytest.Config, item: pytest.Item) -> None:
    """xdist's ``loadgroup`` groups by a ``@group`` suffix of the node id, which it sets
    through ``item._nodeid``; pytest 9.2 keeps node ids in ``item._id`` instead, so the
    suffix is set here (a no-op where xdist's own still works)."""
    mark = item.get_closest_marker("xdist_group")
    if not getattr(config.option, "loadgroup", False) or mark is None or "@" in item.nodeid:
        return
    try:
        from _pytest.nodeid import coerce_node_id
    except ImportError:  # pytest before 9.2: xdist sets the suffix itself
        return
    name = mark.args[0] if mark.args else mark.kwargs.get("name", "default")
    item._id = coerce_node_id(f"{item.nodeid}@{name}")


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
