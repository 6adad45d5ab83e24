"""CLI commands of the dashboard: ``dashboard link``, ``dashboard admin-key`` and ``demo``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from userportrait.cli_common import DATA_DIR_OPTION, err_console, fail, make_settings


@click.group()
def dashboard() -> None:
    """Sign-in links and the admin key of the dashboard served at /."""


def sign_in_link(data_dir: Path, appid: str, base_url: str, link_ttl_s: int) -> str:
    """A one-time sign-in URL; the code rides in the fragment, which no server log sees."""
    from userportrait.auth.store import AuthStore
    from userportrait.dashboard.sessions import SessionStore

    if appid not in {a for a, _ in AuthStore(data_dir / "meta.sqlite").apps()}:
        raise click.ClickException(f"{appid} is not registered (userportrait apps add)")
    code = SessionStore(data_dir, link_ttl_s=link_ttl_s).new_link_code(appid)
    return f"{base_url.rstrip('/')}/#code={code}"


@dashboard.command("link")
@click.option("--appid", required=True, help="The app whose dashboard the link opens.")
@click.option("--base-url", required=True, help="The server's URL, e.g. http://127.0.0.1:8000.")
@DATA_DIR_OPTION
def dashboard_link(appid: str, base_url: str, data_dir: Path | None) -> None:
    """Print a one-time sign-in link (valid USERPORTRAIT_DASHBOARD_LINK_TTL_S seconds)."""
    settings = make_settings(data_dir)
    click.echo(sign_in_link(settings.data_dir, appid, base_url, settings.dashboard_link_ttl_s))


@dashboard.command("admin-key")
@click.option("--set", "key", default=None, help="Use this key (12+ characters) [default: random].")
@DATA_DIR_OPTION
def dashboard_admin_key(key: str | None, data_dir: Path | None) -> None:
    """Write the admin key (signs in to every app) to DATA_DIR/dashboard-admin-key; print it."""
    from userportrait.dashboard.sessions import admin_key_path, write_admin_key

    settings = make_settings(data_dir)
    try:
        key = write_admin_key(settings.data_dir, key)
    except ValueError as exc:
        fail(str(exc))
    click.echo(f"admin key (in {admin_key_path(settings.data_dir)}): {key}")


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

    from userportrait.demo import DEMO_APPID, DEMO_SECRET, prepare

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
            return
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
    import uvicorn

    from userportrait.app import create_app
    from userportrait.http_timeouts import server_options

    click.echo(f"Serving on {base} (Ctrl-C stops)")
    uvicorn.run(
        create_app(settings), host=host, port=port, log_level="warning", access_log=False,
        timeout_graceful_shutdown=10, **server_options(settings),
    )  # fmt: skip
