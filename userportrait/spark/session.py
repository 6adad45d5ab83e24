"""The SparkSession of this process, built from the settings, and the lake as Spark reads it.

One session per process (Spark allows one SparkContext per JVM): ``getOrCreate`` returns
the running one, so tests and the server share it. The SQL settings the rules depend on
(Asia/Shanghai days, NULL on a failed cast, Parquet timestamps DuckDB reads as
TIMESTAMPTZ) are set on every session we hand out, whoever created it.
"""

from __future__ import annotations

import importlib.util
import sys
import uuid
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Final

from userportrait.errors import InputError
from userportrait.settings import Settings
from userportrait.store.catalog import LakeFile
from userportrait.store.lake import Lake

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

INSTALL_HINT: Final = "pip install 'userportrait[spark]'"

#: SQL settings every job relies on (runtime settings: Spark Connect accepts them too).
SQL_CONF: Final[dict[str, str]] = {
    "spark.sql.session.timeZone": "Asia/Shanghai",  # day = the Shanghai date (docs/semantics.md)
    "spark.sql.ansi.enabled": "false",  # a bad cast is NULL, as DuckDB's try_cast
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",  # not INT96
    "spark.sql.parquet.compression.codec": "zstd",
    "spark.sql.sources.partitionColumnTypeInference.enabled": "false",  # appid stays text
}
#: Defaults for a session we start (not for Spark Connect, whose server owns them).
START_CONF: Final[dict[str, str]] = {
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "8",
}


def parse_conf(text: str) -> dict[str, str]:
    """``key=value;key=value`` (the ``spark_conf`` setting) as a dict."""
    out: dict[str, str] = {}
    for item in text.split(";"):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"spark_conf: expected key=value, got {item.strip()!r}")
        out[key.strip()] = value.strip()
    return out


def spark_session(settings: Settings) -> SparkSession:
    """The running SparkSession, or a new one on ``settings.spark_master``."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise InputError(
            f"Spark support is not installed; install it with: {INSTALL_HINT}"
        ) from None
    conf = parse_conf(settings.spark_conf)
    master = settings.spark_master
    if master.startswith("sc://"):
        # The Connect client needs more libraries; without them pyspark exits the process.
        missing = [m for m in ("pandas", "grpc", "google.protobuf") if not _importable(m)]
        if missing:
            raise InputError(
                f"Spark Connect needs {', '.join(missing)}; install them with: "
                "pip install 'pyspark[connect]'"
            )
        with warnings.catch_warnings():
            # pyspark's Connect client warns once, on import, that pandas 3 is new to it;
            # it uses pandas only to hand small lists to createDataFrame.
            warnings.filterwarnings("ignore", "PySpark does not yet fully", FutureWarning)
            session = SparkSession.builder.remote(master).getOrCreate()
    elif (remote := _connect_session()) is not None:
        session = remote  # one session per process, as getOrCreate gives a classic one
    else:
        builder = SparkSession.builder.master(master).appName("userportrait")
        for key, value in {**START_CONF, **SQL_CONF, **conf}.items():
            builder = builder.config(key, value)
        session = builder.getOrCreate()
    for key, value in {
        **SQL_CONF,
        **{k: v for k, v in conf.items() if k.startswith("spark.sql.")},
    }.items():
        session.conf.set(key, value)
    return session


def _connect_session() -> SparkSession | None:
    """The Spark Connect session this process opened, if any (a classic builder would
    start a local JVM beside it)."""
    if "pyspark.sql.connect.session" not in sys.modules:
        return None
    from pyspark.errors import PySparkRuntimeError
    from pyspark.sql.connect.session import SparkSession as RemoteSession

    try:
        return RemoteSession.active()  # type: ignore[return-value]
    except PySparkRuntimeError:  # none open, or stopped
        return None


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def lake_uri(lake: Lake, path: str | Path = "") -> str:
    """``path`` (in the data directory, or relative to it) as Spark's executors see it:
    under ``spark_lake_uri`` when set (the driver reads the same files at their local path)."""
    rel = Path(path)
    if rel.is_relative_to(lake.root):
        rel = rel.relative_to(lake.root)
    base = lake.settings.spark_lake_uri.rstrip("/") or lake.root.resolve().as_uri()
    return f"{base}/{rel.as_posix()}" if str(rel) not in ("", ".") else base


def read_lake(spark: SparkSession, lake: Lake, files: list[LakeFile]) -> DataFrame:
    """The events of ``files`` with their partition columns ``appid`` and ``day`` (DATE)."""
    from pyspark.sql import functions as F

    return (
        spark.read.option("basePath", lake_uri(lake, "events"))
        .parquet(*(lake_uri(lake, f.path) for f in files))
        .withColumn("day", F.col("day").cast("date"))
    )


def spark_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a Spark job raises for bad data (JVM errors arrive as these)."""
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import PySparkException

    return (PySparkException, Py4JJavaError)


def job_failed(uri: str, fmt: str, exc: BaseException) -> InputError:
    """What a failed job of an ingest (an unreadable .gz, a cluster that lost its executors)
    says; it is raised before the catalog commit, so nothing of the file was committed."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return InputError(
        f"{uri}: the Spark job failed; nothing was committed "
        f"(is it readable as {fmt}?): {first[:300]}"
    )


def temp_name(prefix: str) -> str:
    """A temp view name no concurrent job shares (views are per session)."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"
