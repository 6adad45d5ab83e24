"""``expire``: drop the lake's days before a date, keeping the users' first days."""

from __future__ import annotations

from pathlib import Path

import click

from userportrait.cli.common import DATA_DIR_OPTION, make_settings, parse_date_option


@click.command()
@click.option("--before", required=True, help="The first day kept, yyyymmdd or yyyy-mm-dd.")
@click.option("--appid", default=None, help="Only this appid [default: every app].")
@DATA_DIR_OPTION
def expire(before: str, appid: str | None, data_dir: Path | None) -> None:
    """Delete the events of the days before --before (of one app, or all).

    Each user's first day is kept, so every window from --before on answers exactly as
    before; a window that starts earlier is refused (errcode 61501), and events dated
    before it are rejected at ingest. A cut never moves back. Safe while the server
    runs: the files go in one catalog transaction (docs/operations.md, "Retention").
    """
    from userportrait.store.expire import expire as run
    from userportrait.store.lake import Lake

    day = parse_date_option(before, "before")
    report = run(Lake(make_settings(data_dir)), day, appid)
    for app, files in sorted(report.apps.items()):
        click.echo(f"{app}: {files} files dropped")
    click.echo(
        f"expired {report.files} files ({report.rows} events) before "
        f"{day.strftime('%Y%m%d')} of {len(report.apps)} apps; "
        f"{report.users_kept} users' first days kept"
    )
