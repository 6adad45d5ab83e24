"""``spark …``: the commands that run on Apache Spark: ``spark ingest`` and ``spark build`` (docs/spark.md)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from userportrait.cli.common import (
    DATA_DIR_OPTION,
    SPARK_MASTER_OPTION,
    echo_report,
    err_console,
    fail,
    make_settings,
)
from userportrait.settings import Settings

SPARK_CONF_OPTION = click.option(
    "--spark-conf",
    multiple=True,
    metavar="KEY=VALUE",
    help="Spark configuration, repeatable (replaces USERPORTRAIT_SPARK_CONF).",
)


def spark_settings(
    data_dir: Path | None, spark_master: str | None, spark_conf: tuple[str, ...]
) -> Settings:
    return make_settings(
        data_dir, spark_master=spark_master, spark_conf=";".join(spark_conf) or None
    )


def _with_progress(quiet: bool, work: Callable[[Callable[[str, float], None]], Any]) -> Any:
    from rich.progress import Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err_console(),
        disable=quiet,
        transient=True,
    )
    with progress:
        task = progress.add_task("starting Spark", total=1.0)

        def tick(desc: str, frac: float) -> None:
            progress.update(task, description=desc, completed=frac)

        return work(tick)


@click.group("spark")
def spark() -> None:
    """Ingest and build the portrait state on Apache Spark (pip install 'userportrait[spark]').

    The lake, the rules and the state are those of the embedded store: what Spark writes,
    `serve` and every engine read (docs/spark.md).
    """


@spark.command("ingest")
@click.argument("files", nargs=-1, required=True)
@DATA_DIR_OPTION
@SPARK_MASTER_OPTION
@SPARK_CONF_OPTION
@click.option("--build/--no-build", default=True, help="Update the state with Spark afterwards.")
@click.option("--quiet", "-q", is_flag=True, help="No progress display.")
@click.option("--show-rejects", default=20, show_default=True, help="Rejected records to print.")
@click.option(
    "--profiles",
    is_flag=True,
    help="FILES hold user profiles (the rules of `ingest --profiles`), not events.",
)
def spark_ingest(
    files: tuple[str, ...],
    data_dir: Path | None,
    spark_master: str | None,
    spark_conf: tuple[str, ...],
    build: bool,
    quiet: bool,
    show_rejects: int,
    profiles: bool,
) -> None:
    """Load visit events (or, with --profiles, user profiles) from FILES (local paths or
    s3a://, hdfs:// URIs) with Spark.

    Parquet, CSV or NDJSON (optionally .gz): the same checks, rejects and lake layout as
    `ingest`, one batch per file.
    """
    from userportrait.spark.build import BuildTimes, spark_build
    from userportrait.spark.ingest import spark_ingest_file
    from userportrait.spark.profiles import spark_ingest_profiles_file
    from userportrait.spark.session import spark_session
    from userportrait.store.lake import Lake

    settings = spark_settings(data_dir, spark_master, spark_conf)
    lake = Lake(settings)
    session = spark_session(settings)
    for uri in files:

        def work(tick: Callable[[str, float], None], uri: str = uri) -> Any:
            if profiles:  # no day changes: the state notes the version itself
                return spark_ingest_profiles_file(lake, session, uri)
            return spark_ingest_file(lake, session, uri, tick)

        report = _with_progress(quiet, work)
        if report.skipped:
            click.echo(f"{uri}: already ingested (same content), skipped")
            continue
        echo_report(uri, report, show_rejects)
    if build and not profiles:
        times = BuildTimes()
        manifest = _with_progress(quiet, lambda tick: spark_build(lake, session, tick, times=times))
        _report_build(manifest, times)


@spark.command("build")
@DATA_DIR_OPTION
@SPARK_MASTER_OPTION
@SPARK_CONF_OPTION
@click.option("--rebuild", is_flag=True, help="Throw the state away and build it from the lake.")
@click.option("--quiet", "-q", is_flag=True, help="No progress display.")
def spark_build_command(
    data_dir: Path | None,
    spark_master: str | None,
    spark_conf: tuple[str, ...],
    rebuild: bool,
    quiet: bool,
) -> None:
    """Bring the portrait state up to the lake with Spark (only new batches, or all with
    --rebuild); `serve` then answers from it without touching the lake."""
    from userportrait.spark.build import BuildTimes, spark_build
    from userportrait.spark.session import spark_session
    from userportrait.store.lake import Lake

    settings = spark_settings(data_dir, spark_master, spark_conf)
    lake = Lake(settings)
    session = spark_session(settings)
    times = BuildTimes()
    manifest = _with_progress(quiet, lambda tick: spark_build(lake, session, tick, rebuild, times))
    _report_build(manifest, times)


def _report_build(manifest: Any, times: Any) -> None:
    users = sum(a.n_users for a in manifest.apps.values())
    days = sum(len(a.days) for a in manifest.apps.values())
    click.echo(
        f"state at catalog version {manifest.version}: {len(manifest.apps)} apps, "
        f"{users} users, {days} day partitions"
    )
    click.echo(
        f"  {times.total_s:.1f} s: {times.spark_s:.1f} s in Spark jobs (executors), "
        f"{times.driver_s:.1f} s on the driver (reading their output, writing the state)"
    )
    if manifest.failed:
        for appid, failure in sorted(manifest.failed.items()):
            click.echo(f"  {appid}: failed: {failure.error}", err=True)
        fail(f"{len(manifest.failed)} app(s) failed to update; see above")
