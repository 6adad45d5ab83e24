"""``forget``: a deletion request, every trace of some users of an app removed."""

from __future__ import annotations

from pathlib import Path

import click

from userportrait.cli.common import DATA_DIR_OPTION, fail, make_settings


@click.command()
@click.option("--appid", required=True, help="The app whose users are forgotten.")
@click.argument("openids", nargs=-1)
@click.option(
    "--file",
    "file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A file of openids, one a line (blank lines skipped).",
)
@DATA_DIR_OPTION
def forget(appid: str, openids: tuple[str, ...], file: Path | None, data_dir: Path | None) -> None:
    """Forget the users OPENIDS of an app (a deletion request): their events, profiles and
    rejected records, and every file of the app's portrait state that held them.

    Refused while a server uses the data directory: send it POST /v1/forget instead.
    Killed part-way, the store is as before or as after; run it again to finish. The
    last line says how many users and events were removed.
    """
    from userportrait.ingest.live import forget_offline
    from userportrait.store.forget import MAX_OPENIDS
    from userportrait.store.lake import Lake

    wanted = list(openids)
    if file is not None:
        wanted += [line.strip() for line in file.read_text("utf-8").splitlines() if line.strip()]
    wanted = sorted(set(wanted))
    if not wanted:
        fail("no openid given (OPENID... or --file F)")
    lake = Lake(make_settings(data_dir))
    users = events = profiles = rejects = 0
    for start in range(0, len(wanted), MAX_OPENIDS):  # a long list: several forgets
        report = forget_offline(lake, appid, wanted[start : start + MAX_OPENIDS])
        users += report.users
        events += report.events
        profiles += report.profiles
        rejects += report.rejects
    click.echo(f"removed {profiles} profile records and {rejects} rejected records")
    click.echo(f"forgot {users} users, {events} events")
