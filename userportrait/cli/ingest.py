"""``ingest`` (events or profiles from files) and ``compact`` (the lake's small files merged)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from userportrait.cli.common import DATA_DIR_OPTION, echo_report, err_console, make_settings

if TYPE_CHECKING:
    from userportrait.ingest.pipeline import IngestReport


@click.command()
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
    from userportrait.store.lake import Lake

    lake = Lake(make_settings(data_dir))
    if profiles:
        from userportrait.ingest.profiles import check_profile_files, ingest_profiles_file

        check_profile_files(lake, files)
        _ingest_each(files, lambda path: ingest_profiles_file(lake, path), show_rejects)
        return
    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    from userportrait.ingest.pipeline import check_files, ingest_file

    check_files(lake, files)
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

    def one(path: Path) -> IngestReport:
        task = progress.add_task("starting", total=1.0, name=path.name)

        def tick(desc: str, frac: float, task: Any = task) -> None:
            progress.update(task, description=desc, completed=frac)

        return ingest_file(lake, path, tick)

    with progress:
        _ingest_each(files, one, show_rejects)


def _ingest_each(
    files: tuple[Path, ...], ingest_one: Callable[[Path], IngestReport], show_rejects: int
) -> None:
    """Each file's report (or that it was loaded before), then the total of several."""
    total_acc = total_rej = 0
    for path in files:
        report = ingest_one(path)
        if report.skipped:
            click.echo(f"{path}: already ingested (same content), skipped")
            continue
        total_acc += report.accepted
        total_rej += report.rejected
        echo_report(str(path), report, show_rejects)
    if len(files) > 1:
        click.echo(f"total: {total_acc} accepted, {total_rej} rejected")


@click.command()
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
