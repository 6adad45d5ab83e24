"""What every CLI module shares: the data-dir option, settings from it, and ``fail``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from userportrait.settings import Settings

if TYPE_CHECKING:
    from rich.console import Console

    from userportrait.ingest.pipeline import IngestReport

_console: list[Console] = []


def err_console() -> Console:
    """The stderr console for progress bars and errors. rich is imported when one is
    needed, not by every command (it is a sixth of a fresh ``portrait``'s start-up)."""
    if not _console:
        from rich.console import Console

        _console.append(Console(stderr=True))
    return _console[0]


DATA_DIR_OPTION = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Data directory [env USERPORTRAIT_DATA_DIR; default ~/.local/share/userportrait].",
)


def fail(message: str) -> NoReturn:
    """Print ``error: message`` to stderr and exit with status 1."""
    from rich.markup import escape  # a message may hold brackets: 'userportrait[spark]'

    err_console().print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(1)


def make_settings(data_dir: Path | None, **overrides: Any) -> Settings:
    try:
        return Settings.from_env(data_dir=data_dir, **overrides)
    except ValueError as exc:
        fail(str(exc))


def echo_report(label: str, report: IngestReport, show_rejects: int) -> None:
    """An ingest's counts and its first rejects, as ``ingest`` and ``spark ingest`` print."""
    dup = f", {report.duplicates} duplicate event_id(s) dropped" if report.duplicates else ""
    click.echo(f"{label}: {report.accepted} accepted, {report.rejected} rejected{dup}")
    for r in report.rejects[:show_rejects]:
        click.echo(f"  rejected {r.file}:{r.line}: {r.reason}")
    if report.rejected > show_rejects:
        click.echo(f"  … {report.rejected - show_rejects} more")
    if report.rejects_file:
        click.echo(f"  all rejected records: {report.rejects_file}")
