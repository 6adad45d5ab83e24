"""The ``userportrait`` command line (SPEC §6)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from userportrait import __version__
from userportrait.cli_common import DATA_DIR_OPTION, echo_report, err_console, fail, make_settings
from userportrait.cli_spark import SPARK_MASTER_OPTION
from userportrait.errors import ServiceError
from userportrait.runtime import tune_process

if TYPE_CHECKING:
    from rich.table import Table


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="userportrait")
def cli() -> None:
    """Self-hosted WeChat mini-program user portraits.

    Load visit events with `ingest`, then ask for the portrait of any date window with
    `portrait`, or serve the WeChat-compatible API with `serve`.
    """
    tune_process()


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@DATA_DIR_OPTION
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--show-rejects", default=20, show_default=True, help="Rejected records to print.")
@click.option(
    "--profiles",
    is_flag=True,
    help="FILES hold user profiles (appid, openid, gender, birth_date or birth_year, "
    "province, city, updated_at), not events.",
)
def ingest(
    files: tuple[Path, ...], data_dir: Path | None, quiet: bool, show_rejects: int, profiles: bool
) -> None:
    """Load visit events (or, with --profiles, user profiles) from Parquet, CSV or NDJSON
    FILES (optionally .gz).

    Every file is checked before anything is written. Records that can't be used are
    reported with file, line and reason and kept in DATA_DIR/rejects/. Loading the same
    file twice changes nothing.
    """
    if profiles:
        _ingest_profiles(files, data_dir, show_rejects)
        return
    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    from userportrait.ingest.pipeline import check_files, ingest_file
    from userportrait.store.lake import Lake

    lake = Lake(make_settings(data_dir))
    try:
        check_files(lake, files)
    except ServiceError as exc:
        fail(exc.message)
    total_acc = total_rej = 0
    progress = Progress(
        TextColumn("{task.fields[name]}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err_console(),
        disable=quiet,
        transient=False,
    )
    with progress:
        for path in files:
            task = progress.add_task("starting", total=1.0, name=path.name)

            def tick(desc: str, frac: float, task: Any = task) -> None:
                progress.update(task, description=desc, completed=frac)

            try:
                report = ingest_file(lake, path, tick)
            except ServiceError as exc:
                progress.stop()
                fail(exc.message)
                return
            if report.skipped:
                click.echo(f"{path}: already ingested (same content), skipped")
                continue
            total_acc += report.accepted
            total_rej += report.rejected
            echo_report(str(path), report, show_rejects)
    if len(files) > 1:
        click.echo(f"total: {total_acc} accepted, {total_rej} rejected")


def _ingest_profiles(files: tuple[Path, ...], data_dir: Path | None, show_rejects: int) -> None:
    from userportrait.ingest.profiles import check_profile_files, ingest_profiles_file
    from userportrait.store.lake import Lake

    lake = Lake(make_settings(data_dir))
    try:
        check_profile_files(lake, files)
    except ServiceError as exc:
        fail(exc.message)
    total_acc = total_rej = 0
    for path in files:
        try:
            report = ingest_profiles_file(lake, path)
        except ServiceError as exc:
            fail(exc.message)
            return
        if report.skipped:
            click.echo(f"{path}: already ingested (same content), skipped")
            continue
        total_acc += report.accepted
        total_rej += report.rejected
        echo_report(str(path), report, show_rejects)
    if len(files) > 1:
        click.echo(f"total: {total_acc} accepted, {total_rej} rejected")


def _parse_cli_date(value: str, name: str) -> dt.date:
    from userportrait.portrait.request import parse_date

    try:
        return parse_date(value, name)
    except ServiceError as exc:
        raise click.BadParameter(exc.message, param_hint=f"--{name}") from None


@cli.command()
@click.option("--appid", required=True, help="The mini program's appid.")
@click.option("--begin", required=True, help="First day, yyyymmdd or yyyy-mm-dd.")
@click.option("--end", required=True, help="Last day (inclusive), yyyymmdd or yyyy-mm-dd.")
@DATA_DIR_OPTION
@click.option(
    "--engine",
    default=None,
    help="incremental (default; the incremental store, also accepted as duckdb), sql (one DuckDB query over the lake), reference (pure Python, row by row) or spark (Spark SQL; the spark extra).",
)
@SPARK_MASTER_OPTION
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "table", "csv"]),
    default="json",
    show_default=True,
    help="json is exactly WeChat's success body.",
)
@click.option(
    "--raw", is_flag=True, help="Exact rows even for an app with a small-count threshold."
)
def portrait(
    appid: str,
    begin: str,
    end: str,
    data_dir: Path | None,
    engine: str | None,
    spark_master: str | None,
    fmt: str,
    raw: bool,
) -> None:
    """Print the portrait of new and active users of APPID for a date window.

    Any window works here (WeChat's 1/7/30-day limits apply only to the API), except for
    an app protected by `apps threshold`: it answers as the API does, 1/7/30-day windows
    with small rows folded, unless --raw is given (docs/privacy.md).
    """
    from userportrait.engine import get_engine
    from userportrait.portrait.request import make_query
    from userportrait.portrait.service import portrait as compute
    from userportrait.store.lake import Lake

    settings = make_settings(data_dir, engine=engine, spark_master=spark_master)
    b, e = _parse_cli_date(begin, "begin"), _parse_cli_date(end, "end")
    try:
        threshold = None
        if not raw and (settings.data_dir / "meta.sqlite").exists():
            from userportrait.store.thresholds import Thresholds

            threshold = Thresholds(settings.data_dir / "meta.sqlite").get(appid)
        query = make_query(appid, b, e, threshold=threshold)
        eng = get_engine(settings.engine, Lake(settings))
        try:
            body = compute(query, eng, "begin" if settings.ref_date_mode == "begin" else "range")
        finally:
            eng.close()
    except ServiceError as exc:
        fail(exc.message)
        return
    from userportrait.portrait.export import portrait_csv

    if fmt == "json":
        click.echo(json.dumps(body, ensure_ascii=False))
    elif fmt == "csv":
        click.echo(portrait_csv(body), nl=False)
    else:
        from rich.console import Console

        Console().print(*portrait_tables(body))


def portrait_tables(body: dict[str, Any]) -> list[Table]:
    """One table per dimension: new vs active users and the new-vs-active index."""
    from rich.table import Table

    new, active = body["visit_uv_new"], body["visit_uv"]
    tables = []
    for dim, rows in active.items():
        total_active = sum(r["value"] for r in rows) or 1
        new_by_name = {r["name"]: r["value"] for r in new[dim]}
        total_new = sum(new_by_name.values()) or 1
        table = Table(title=f"{dim} — {body['ref_date']}", title_justify="left")
        table.add_column("value")
        table.add_column("new", justify="right")
        table.add_column("active", justify="right")
        table.add_column("share", justify="right")
        table.add_column("index", justify="right")
        for r in rows:
            n = new_by_name.get(r["name"], 0)
            index = (n / total_new) / (r["value"] / total_active) * 100
            table.add_row(
                r["name"],
                str(n),
                str(r["value"]),
                f"{r['value'] / total_active:.1%}",
                f"{index:.0f}",
            )
        tables.append(table)
    return tables


@cli.command()
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--users", default=10_000, show_default=True, help="Distinct users per data set.")
@click.option("--days", default=40, show_default=True, help="Days of events.")
@click.option("--end", default=None, help="Last day yyyymmdd [default: yesterday, Asia/Shanghai].")
@click.option("--apps", default=3, show_default=True, help="Number of appids.")
@click.option("--visits-per-user", default=13.0, show_default=True, help="Mean visits per user.")
@click.option("--seed", default=7, show_default=True, help="Random seed (same seed, same file).")
@click.option("--event-ids/--no-event-ids", default=False, help="Add an event_id to every event.")
@click.option(
    "--profiles",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write profiles of half the users to this NDJSON file (.gz allowed).",
)
@click.option("--ips", is_flag=True, help="An ip column instead of province and city.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def generate(
    out: Path,
    users: int,
    days: int,
    end: str | None,
    apps: int,
    visits_per_user: float,
    seed: int,
    event_ids: bool,
    profiles: Path | None,
    ips: bool,
    quiet: bool,
) -> None:
    """Write a realistic synthetic event file to OUT (.parquet, .csv or .ndjson, optionally .gz)."""
    from userportrait.generate import GeneratorConfig, write_events, write_profiles
    from userportrait.portrait.query import today_shanghai

    last = _parse_cli_date(end, "end") if end else today_shanghai() - dt.timedelta(days=1)
    config = GeneratorConfig(
        users=users,
        days=days,
        end=last,
        apps=apps,
        visits_per_user=visits_per_user,
        seed=seed,
        event_ids=event_ids,
        ips=ips,
    )
    from rich.progress import Progress

    with Progress(console=err_console(), disable=quiet) as progress:
        task = progress.add_task(f"generating {out.name}", total=days)
        try:
            count = write_events(out, config, lambda: progress.advance(task))
        except ValueError as exc:
            fail(str(exc))
    click.echo(
        f"{out}: {count} events, {users} users, {days} days ending {last:%Y%m%d}, appids {', '.join(config.appids)}"
    )
    if profiles is not None:
        click.echo(f"{profiles}: {write_profiles(profiles, config)} profile records")


@cli.command()
@click.option("--appid", default=None, help="Only this appid's partitions [default: all].")
@click.option(
    "--min-files",
    default=2,
    show_default=True,
    help="Compact an (appid, day) partition once it has at least this many files.",
)
@click.option(
    "--grace",
    default=600.0,
    show_default=True,
    help="Seconds a replaced file stays on disk for readers that listed it before.",
)
@DATA_DIR_OPTION
def compact(appid: str | None, min_files: int, grace: float, data_dir: Path | None) -> None:
    """Merge the small files of each lake partition into one (same rows, same answers).

    Small: fewer than 1,048,576 rows; larger files are left as they are.

    Every ingest batch writes one file per (appid, day); a server taking live events
    writes one per flush (it compacts on its own, see live_compact_files). Safe while
    the server runs: the swap is one catalog transaction.
    """
    from userportrait.store.compact import compact as run
    from userportrait.store.lake import Lake

    report = run(Lake(make_settings(data_dir)), appid, max(2, min_files), grace)
    click.echo(
        f"compacted {report.partitions} partitions ({report.files_merged} files, "
        f"{report.rows} events); deleted {report.deleted} replaced files"
    )


def _register_server_commands() -> None:
    from userportrait.cli_access import apps_allow_ip, apps_security, component
    from userportrait.cli_dashboard import dashboard, demo
    from userportrait.cli_regions import regions
    from userportrait.cli_server import apps, serve
    from userportrait.cli_spark import spark

    cli.add_command(serve)
    cli.add_command(apps)
    apps.add_command(apps_security)
    apps.add_command(apps_allow_ip)
    cli.add_command(component)
    cli.add_command(dashboard)
    cli.add_command(demo)
    cli.add_command(spark)
    cli.add_command(regions)


_register_server_commands()
