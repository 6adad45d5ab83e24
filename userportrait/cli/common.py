"""What every CLI module shares: the group that turns a ``ServiceError`` into ``error: …``,
the options several commands take (``--data-dir``, ``--engine``, ``--spark-master``),
settings from them, ``fail``, dates and ingest reports.

Imported at every start: nothing heavy here (rich, the store, the engines are imported
inside the functions that need them).
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from userportrait.errors import ServiceError
from userportrait.settings import ENV_PREFIX, SETTINGS, Settings

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


def fail(message: str) -> NoReturn:
    """Print ``error: message`` to stderr and exit with status 1."""
    from rich.markup import escape  # a message may hold brackets: 'userportrait[spark]'

    err_console().print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(1)


class Group(click.Group):
    """The top-level group: a ``ServiceError`` from any command below it (nested groups
    included) ends the process as ``fail`` does, so no command catches one itself.

    An open progress bar is closed by its ``with`` block before the message is printed.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ServiceError as exc:
            fail(exc.message)


DATA_DIR_OPTION = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Data directory [env USERPORTRAIT_DATA_DIR; default ~/.local/share/userportrait].",
)

ENGINE_OPTION = click.option(
    "--engine",
    default=None,
    help=f"{SETTINGS['engine']} [env {ENV_PREFIX}ENGINE]",
)

SPARK_MASTER_OPTION = click.option(
    "--spark-master",
    default=None,
    help="local[*] (default), a cluster master URL, or sc://host:port (Spark Connect) [env USERPORTRAIT_SPARK_MASTER].",
)


def make_settings(data_dir: Path | None, **overrides: Any) -> Settings:
    """Settings from the environment and the command's options; with
    ``USERPORTRAIT_LOG_FORMAT=json`` a command's log lines (warnings and worse) are JSON."""
    try:
        settings = Settings.from_env(data_dir=data_dir, **overrides)
    except ValueError as exc:
        fail(str(exc))
    if settings.log_format != "text":
        configure_logging(settings, logging.WARNING)
    return settings


def configure_logging(settings: Settings, level: int) -> None:
    from userportrait.logs import configure

    try:
        configure(settings.log_format, level)
    except ValueError as exc:
        fail(f"USERPORTRAIT_LOG_FORMAT: {exc}")


def parse_date_option(value: str, name: str) -> dt.date:
    """The date given as ``--NAME``; a bad one is a usage error (exit 2), as click's own."""
    from userportrait.portrait.request import parse_date

    try:
        return parse_date(value, name)
    except ServiceError as exc:
        raise click.BadParameter(exc.message, param_hint=f"--{name}") from None


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
