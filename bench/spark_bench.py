"""Issue 15 benchmark: Spark (local mode) beside the embedded store, on the same events.

    .venv/bin/python bench/spark_bench.py --users 150000     # ~2 M events, a few minutes
    .venv/bin/python bench/spark_bench.py --users 3000000    # the ~40 M-event set

Steps, each timed on its own: the embedded ``ingest`` (lake + state), ``spark ingest``
(lake only), ``spark build --rebuild`` (the whole state, split into the time in Spark
jobs and on the driver), and a cold 30-day portrait from
the ``sql`` engine, the ``spark`` engine and the incremental store in a fresh process.
Also the figures the paper design in docs/spark.md rests on: bytes Spark shuffled per
event in each job (from Spark's REST API) and the state's bytes per user. The two lakes
are checked to hold the same rows and the two states to answer the same. Prints Markdown.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CACHE = HERE / "cache"
END = dt.date(2026, 1, 31)


def shuffle_bytes(spark: Any) -> tuple[int, int]:
    """(shuffle write bytes, input bytes) of every stage so far, from Spark's REST API."""
    url = spark.sparkContext.uiWebUrl
    app = spark.sparkContext.applicationId
    with urllib.request.urlopen(f"{url}/api/v1/applications/{app}/stages") as res:
        stages = json.load(res)
    return (
        sum(s.get("shuffleWriteBytes", 0) for s in stages),
        sum(s.get("inputBytes", 0) for s in stages),
    )


def cold_portrait(data: Path, engine: str, appid: str) -> float:
    """A 30-day portrait in a fresh process (so nothing is cached); seconds of the query."""
    code = (
        "import sys, time, datetime as dt\n"
        "from pathlib import Path\n"
        "from userportrait.settings import Settings\n"
        "from userportrait.store.lake import Lake\n"
        "from userportrait.engine import get_engine\n"
        "from userportrait.portrait.query import PortraitQuery\n"
        "from userportrait.portrait.service import portrait\n"
        f"lake = Lake(Settings(data_dir=Path({str(data)!r}), spark_master='local[2]'))\n"
        f"eng = get_engine({engine!r}, lake)\n"
        f"end = dt.date.fromisoformat({END.isoformat()!r})\n"
        "t = time.perf_counter()\n"
        f"portrait(PortraitQuery({appid!r}, end - dt.timedelta(days=29), end), eng)\n"
        "print(time.perf_counter() - t)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    return float(out.strip().splitlines()[-1])


def dir_bytes(path: Path, pattern: str) -> int:
    return sum(p.stat().st_size for p in path.rglob(pattern) if p.is_file())


class Rows(list[tuple[str, str]]):
    """The table's rows, each also printed to stderr as soon as it is measured."""

    def append(self, row: tuple[str, str]) -> None:
        print(f"  {row[0]}: {row[1]}", file=sys.stderr, flush=True)
        super().append(row)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=150_000)
    ap.add_argument("--days", type=int, default=40)
    ap.add_argument("--work", type=Path, default=CACHE / "spark")
    args = ap.parse_args()

    from pyspark.sql import SparkSession

    from userportrait.ingest.pipeline import ingest_file
    from userportrait.settings import Settings
    from userportrait.spark.build import BuildTimes, spark_build
    from userportrait.spark.ingest import spark_ingest_file
    from userportrait.spark.session import SQL_CONF
    from userportrait.store.lake import Lake
    from userportrait.store.state import StateStore
    from userportrait.store.state.npys import load_arrays
    from userportrait.synthetic.generate import GeneratorConfig, write_events

    config = GeneratorConfig(users=args.users, days=args.days, end=END, apps=1, seed=7)
    CACHE.mkdir(exist_ok=True)
    src = CACHE / f"spark-events-{args.users}-{args.days}.parquet"
    if not src.exists():
        write_events(src, config)
    shutil.rmtree(args.work, ignore_errors=True)
    rows = Rows()

    embedded = Lake(Settings(data_dir=args.work / "embedded"))
    t = time.perf_counter()
    report = ingest_file(embedded, src)
    rows.append(("embedded `ingest` (lake + state)", f"{time.perf_counter() - t:.1f} s"))
    events = report.accepted

    builder = SparkSession.builder.master("local[2]").appName("userportrait-bench")
    for key, value in {**SQL_CONF, "spark.sql.shuffle.partitions": "8",
                       "spark.driver.memory": "4g", "spark.ui.port": "0",
                       "spark.ui.showConsoleProgress": "false"}.items():  # fmt: skip
        builder = builder.config(key, value)
    t = time.perf_counter()
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    rows.append(("Spark session start (local[2])", f"{time.perf_counter() - t:.1f} s"))

    lake = Lake(Settings(data_dir=args.work / "spark"))
    before = shuffle_bytes(spark)
    t = time.perf_counter()
    spark_ingest_file(lake, spark, str(src))
    ingest_s = time.perf_counter() - t
    after_ingest = shuffle_bytes(spark)
    t = time.perf_counter()
    times = BuildTimes()
    manifest = spark_build(lake, spark, rebuild=True, times=times)
    build_s = time.perf_counter() - t
    after_build = shuffle_bytes(spark)
    assert not manifest.failed
    rows.append(("`spark ingest` (lake only)", f"{ingest_s:.1f} s"))
    rows.append(("`spark build --rebuild` (whole state)", f"{build_s:.1f} s"))
    rows.append(("… of which in Spark jobs (executors)", f"{times.spark_s:.1f} s"))
    rows.append(("… of which on the driver (reading their output, writing the state)",
                 f"{times.driver_s:.1f} s"))  # fmt: skip
    ingest_shuffle = after_ingest[0] - before[0]
    build_shuffle = after_build[0] - after_ingest[0]
    rows.append(("shuffle bytes per event, ingest", f"{ingest_shuffle / events:.1f}"))
    rows.append(("shuffle bytes per event, build", f"{build_shuffle / events:.1f}"))
    lake_bytes = dir_bytes(lake.events_dir, "*.parquet")
    rows.append(("lake bytes per event (Parquet, zstd)", f"{lake_bytes / events:.1f}"))

    appid = config.appids[0]
    app = manifest.apps[appid]
    state = lake.state_dir / f"appid={appid}"
    n = app.n_users
    heads = sorted((state / "heads").glob("*.npys"))
    head = heads[-1].stat().st_size if heads else 0  # the newest day's head
    users = dir_bytes(state / "users", "*.parquet")
    days = dir_bytes(state / "days", "*.npys") - dir_bytes(state / "days", "*.keys.*")
    user_days = sum(  # day partitions only, not the newest day's times (.keys.)
        int(load_arrays(p)["uid"].size)
        for p in (state / "days").glob("*.npys")
        if ".keys." not in p.name
    )
    rows.append(("users", f"{n:,}"))
    rows.append(("head bytes per user", f"{head / n:.1f}"))
    rows.append(("user dictionary bytes per user", f"{users / n:.1f}"))
    rows.append(("day partition bytes per active user-day", f"{days / user_days:.1f}"))

    for engine in ("sql", "spark"):
        secs = cold_portrait(embedded.root if engine == "sql" else lake.root, engine, appid)
        rows.append((f"cold 30-day portrait, `{engine}` engine (fresh process)", f"{secs:.2f} s"))
    secs = cold_portrait(lake.root, "incremental", appid)
    rows.append(("cold 30-day portrait, incremental store built by Spark", f"{secs:.2f} s"))

    # The same answers from both states (spot check: the three standard windows).
    from userportrait.portrait.query import PortraitQuery

    for n_days in (1, 7, 30):
        q = PortraitQuery(appid, END - dt.timedelta(days=n_days - 1), END)
        assert StateStore(lake).portrait_after_catch_up(q) == StateStore(
            embedded
        ).portrait_after_catch_up(q), n_days
    spark.stop()

    print(f"{events:,} events, {args.users:,} users, {args.days} days, one appid\n")
    print("| figure | measured |\n|---|---:|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
