"""``generate`` (a synthetic event file) and ``demo`` (synthetic data served with the dashboard)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from userportrait.cli.common import err_console, fail, make_settings, parse_date_option
from userportrait.cli.dashboard import sign_in_link


@click.command()
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
    from userportrait.portrait.query import today_shanghai
    from userportrait.synthetic.generate import GeneratorConfig, write_events, write_profiles

    last = parse_date_option(end, "end") if end else today_shanghai() - dt.timedelta(days=1)
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


@click.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("userportrait-demo"),
    show_default=True,
    help="Where the demo data lives (reused on the next run).",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--users", default=200_000, show_default=True, help="Distinct users (two apps).")
@click.option("--days", default=40, show_default=True, help="Days of events, ending yesterday.")
@click.option("--no-serve", is_flag=True, help="Prepare and print, but do not start the server.")
def demo(data_dir: Path, host: str, port: int, users: int, days: int, no_serve: bool) -> None:
    """Generate demo data, register two demo apps, serve the API and the dashboard.

    Prints a sign-in link to the dashboard, the demo credentials, a curl for the
    WeChat-compatible endpoint and one posting an event with the ingest key.
    """
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    from userportrait.synthetic.demo import DEMO_APPID, DEMO_SECRET, prepare

    data_dir = data_dir.resolve()
    progress = Progress(
        TextColumn("{task.fields[name]:<10}"), BarColumn(), TaskProgressColumn(),
        TextColumn("{task.description}"), TimeElapsedColumn(), console=err_console(),
    )  # fmt: skip
    with progress:
        gen = progress.add_task("", total=1.0, name="generate")
        ing = progress.add_task("", total=1.0, name="ingest", start=False)

        def on_ingest(desc: str, frac: float) -> None:
            progress.start_task(ing)  # its clock starts when generation is done
            # Loading reaches 1.0 before the portrait state is built; the bar (and its
            # clock) finishes only when prepare() returns.
            progress.update(ing, description=desc, completed=min(frac, 0.99))

        try:
            data = prepare(
                data_dir, users=users, days=days,
                on_generate=lambda d, f: progress.update(gen, description=d, completed=f),
                on_ingest=on_ingest,
            )  # fmt: skip
        except ValueError as exc:
            progress.stop()
            fail(str(exc))
        for task in (gen, ing):
            progress.start_task(task)
            if data.reused:
                progress.update(task, description=f"reused {data_dir}")
            progress.update(task, completed=1.0)
    settings = make_settings(data_dir, host=host, port=port)
    base = f"http://{host}:{port}"
    link = sign_in_link(data_dir, DEMO_APPID, base, settings.dashboard_link_ttl_s)
    end = data.end
    begin = end - dt.timedelta(days=6)
    click.echo(
        f"""
Demo data: {data.users} users, {data.days} days ending {end:%Y%m%d}, two apps, in {data_dir}

Dashboard (one-time sign-in link, valid {settings.dashboard_link_ttl_s // 60} minutes):
  {link}
Sign in by hand at {base}/ with
  AppID {DEMO_APPID}   AppSecret {DEMO_SECRET}
  or the admin key {data.admin_key} (both apps)
A new link: userportrait dashboard link --appid {DEMO_APPID} --base-url {base} --data-dir {data_dir}

The WeChat-compatible API:
  T=$(curl -s "{base}/cgi-bin/token?grant_type=client_credential&appid={DEMO_APPID}&secret={DEMO_SECRET}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  curl -s -X POST "{base}/datacube/getweanalysisappiduserportrait?access_token=$T" -d '{{"begin_date":"{begin:%Y%m%d}","end_date":"{end:%Y%m%d}"}}'
Sending events takes the app's write-only ingest key (new each run; tokens only read):
  IngestKey {data.ingest_key}
  curl -s -X POST "{base}/v1/events" -H "Authorization: Bearer {data.ingest_key}" -d '{{"appid":"{DEMO_APPID}","openid":"demo-visitor","ts":"{end:%Y-%m-%d}T12:00:00+08:00","platform":"ios"}}'
API docs: {base}/docs
"""
    )
    if no_serve:
        return
    from userportrait.app import create_app
    from userportrait.cli.serve import run_server

    click.echo(f"Serving on {base} (Ctrl-C stops)")
    run_server(create_app(settings), settings, "warning")
