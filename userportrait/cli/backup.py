"""``backup`` (a consistent copy of a serving data directory) and ``restore`` (a checked
backup made a data directory again); docs/operations.md, ``store/backup.py``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from userportrait.cli.common import DATA_DIR_OPTION, err_console, make_settings


@contextmanager
def _progress(quiet: bool) -> Iterator[Callable[[str, int, int], None]]:
    """A rich progress bar fed by ``(phase, done, total)``; one bar a phase."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console(),
        disable=quiet,
        transient=False,
    )
    tasks: dict[str, Any] = {}

    def tick(phase: str, done: int, total: int) -> None:
        if phase not in tasks:
            tasks[phase] = bar.add_task(phase, total=max(total, 1))
        bar.update(tasks[phase], completed=done, total=max(total, 1))

    with bar:
        yield tick


@click.command()
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@DATA_DIR_OPTION
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def backup(dest: Path, data_dir: Path | None, quiet: bool) -> None:
    """Copy the data directory into DEST (new or empty), safely while the server runs.

    Each committed batch is in the backup wholly or not at all; events acknowledged by
    the server but not yet flushed into a batch are not. Lake and state files are hard
    links where DEST is on the same file system (cheap), else copies.
    """
    from userportrait.store.backup import backup as run

    with _progress(quiet) as tick:
        report = run(make_settings(data_dir), dest, tick)
    click.echo(
        f"backup {dest}: {len(report.files)} files ({report.linked} hard-linked), "
        f"{report.bytes} bytes copied, catalog version {report.catalog_version}, "
        f"writers paused {report.seconds_locked:.2f} s"
    )


@click.command()
@click.argument("src", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option(
    "--data-dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The data directory to create (must not exist, or be empty).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def restore(src: Path, data_dir: Path, quiet: bool) -> None:
    """Check the backup SRC (every file, sizes, checksums, SQLite integrity) and make it
    the data directory DATA_DIR."""
    from userportrait.store.backup import restore as run

    with _progress(quiet) as tick:
        count = run(src, data_dir, tick)
    click.echo(f"restored {count} files into {data_dir}")
