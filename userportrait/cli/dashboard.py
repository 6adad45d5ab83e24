"""``dashboard …``: sign-in links and the admin key of the dashboard (docs/dashboard.md)."""

from __future__ import annotations

from pathlib import Path

import click

from userportrait.cli.common import DATA_DIR_OPTION, fail, make_settings


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
