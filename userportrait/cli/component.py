"""``component …``: third-party platforms (docs/api.md), with the CLI playing WeChat's part.

Commands that print one value (a ticket, a code) print it alone on the last line.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from userportrait.cli.common import DATA_DIR_OPTION, fail, make_settings

if TYPE_CHECKING:
    from userportrait.auth.component import ComponentStore


def _components(data_dir: Path | None) -> ComponentStore:
    from userportrait.auth.component import ComponentStore

    return ComponentStore(make_settings(data_dir).data_dir / "component.sqlite")


@click.group()
def component() -> None:
    """Third-party platforms (第三方平台) and the apps that authorise them.

    The CLI plays WeChat's part: it hands out the component_verify_ticket and records
    an app's authorisation (the QR-code page), printing the authorization_code.
    """


@component.command("add")
@click.option("--component-appid", required=True)
@click.option("--secret", required=True, help="At least 8 characters; stored hashed.")
@DATA_DIR_OPTION
def component_add(component_appid: str, secret: str, data_dir: Path | None) -> None:
    """Register a third-party platform."""
    _components(data_dir).add(component_appid, secret)
    click.echo(f"registered component {component_appid}")


@component.command("ticket")
@click.option("--component-appid", required=True)
@DATA_DIR_OPTION
def component_ticket(component_appid: str, data_dir: Path | None) -> None:
    """Print the current component_verify_ticket (a new one every 10 min; valid 12 h)."""
    click.echo(_components(data_dir).ticket(component_appid))


@component.command("authorize")
@click.option("--component-appid", required=True)
@click.option("--appid", required=True, help="The app (authorizer) granting access.")
@click.option(
    "--permissions", required=True, help="Permission set ids, e.g. 1,18 (18: data analysis)."
)
@DATA_DIR_OPTION
def component_authorize(
    component_appid: str, appid: str, permissions: str, data_dir: Path | None
) -> None:
    """Record APPID's authorisation of the platform; print a one-time authorization_code (1 h)."""
    from userportrait.auth.component import parse_permissions

    code = _components(data_dir).authorize(component_appid, appid, parse_permissions(permissions))
    click.echo(code)


@component.command("revoke")
@click.option("--component-appid", required=True)
@click.option("--appid", required=True)
@DATA_DIR_OPTION
def component_revoke(component_appid: str, appid: str, data_dir: Path | None) -> None:
    """Withdraw APPID's authorisation: the platform's tokens for it stop at once."""
    _components(data_dir).revoke(component_appid, appid)
    click.echo(f"revoked {component_appid} for {appid}")


@component.command("callback")
@click.option("--component-appid", required=True)
@click.option("--url", default=None, help="The platform's 授权事件接收 URL.")
@click.option("--token", default=None, help="The platform's message-check Token.")
@click.option("--encoding-aes-key", default=None, help="The platform's EncodingAESKey (43 chars).")
@click.option("--off", is_flag=True, help="Stop pushing tickets to the platform.")
@DATA_DIR_OPTION
def component_callback(
    component_appid: str, url: str | None, token: str | None, encoding_aes_key: str | None,
    off: bool, data_dir: Path | None,
) -> None:  # fmt: skip
    """Have `serve` push the ticket to the platform's URL every 10 min, as WeChat does."""
    from userportrait.auth.ticket_push import Callback

    if not off and not (url and token and encoding_aes_key):
        fail("give --url, --token and --encoding-aes-key (or --off)")
    callback = (
        None if off else Callback(component_appid, url or "", token or "", encoding_aes_key or "")
    )
    _components(data_dir).set_callback(callback, component_appid)
    click.echo(f"tickets for {component_appid} " + ("not pushed" if off else f"pushed to {url}"))
