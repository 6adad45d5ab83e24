"""CLI of the ways in (issue 12): ``component …``, ``apps security``, ``apps allow-ip``.

Commands that print one value (a ticket, a code, a serial) print it alone on the last line.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from userportrait.cli_common import DATA_DIR_OPTION, fail, make_settings
from userportrait.errors import ServiceError

if TYPE_CHECKING:
    from userportrait.auth.component import ComponentStore
    from userportrait.auth.policy import Policy


def _components(data_dir: Path | None) -> ComponentStore:
    from userportrait.auth.component import ComponentStore

    return ComponentStore(make_settings(data_dir).data_dir / "component.sqlite")


def _policy(data_dir: Path | None) -> Policy:
    from userportrait.auth.policy import Policy

    return Policy(make_settings(data_dir).data_dir / "access.sqlite")


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
    try:
        _components(data_dir).add(component_appid, secret)
    except ServiceError as exc:
        fail(exc.message)
    click.echo(f"registered component {component_appid}")


@component.command("ticket")
@click.option("--component-appid", required=True)
@DATA_DIR_OPTION
def component_ticket(component_appid: str, data_dir: Path | None) -> None:
    """Print the current component_verify_ticket (a new one every 10 min; valid 12 h)."""
    try:
        click.echo(_components(data_dir).ticket(component_appid))
    except ServiceError as exc:
        fail(exc.message)


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

    try:
        code = _components(data_dir).authorize(
            component_appid, appid, parse_permissions(permissions)
        )
    except ServiceError as exc:
        fail(exc.message)
        return
    click.echo(code)


@component.command("revoke")
@click.option("--component-appid", required=True)
@click.option("--appid", required=True)
@DATA_DIR_OPTION
def component_revoke(component_appid: str, appid: str, data_dir: Path | None) -> None:
    """Withdraw APPID's authorisation: the platform's tokens for it stop at once."""
    try:
        _components(data_dir).revoke(component_appid, appid)
    except ServiceError as exc:
        fail(exc.message)
    click.echo(f"revoked {component_appid} for {appid}")


@click.command("security")
@click.option("--appid", required=True)
@click.option("--aes-key", default=None, help="The app's AES-256 key, base64 (44 characters).")
@click.option("--aes-sn", default=None, help="The symmetric key's serial number.")
@click.option(
    "--public-key",
    default=None,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM file: the RSA public key (or certificate) the app signs requests with.",
)
@click.option("--public-key-sn", default=None, help="That key's serial number.")
@click.option("--off", is_flag=True, help="Turn API-security mode off for the app.")
@click.option(
    "--show-platform-key", is_flag=True, help="Print the server's public key, then its serial."
)
@DATA_DIR_OPTION
def apps_security(
    appid: str, aes_key: str | None, aes_sn: str | None, public_key: Path | None,
    public_key_sn: str | None, off: bool, show_platform_key: bool, data_dir: Path | None,
) -> None:  # fmt: skip
    """API-security mode (服务端 API 签名加密) for APPID: on, --off, or --show-platform-key.

    With it on, the datacube routes take only encrypted, signed requests from the app
    and answer encrypted, signed (docs/api.md).
    """
    from userportrait.auth.security import parse_aes_key, platform_key

    if show_platform_key:
        key = platform_key(make_settings(data_dir).data_dir)
        click.echo(key.public_pem(), nl=False)
        click.echo(key.serial)
        return
    policy = _policy(data_dir)
    if off:
        gone = policy.security_off(appid)
        click.echo(f"API-security mode off for {appid}" + ("" if gone else " (it was not on)"))
        return
    if not (aes_key and aes_sn and public_key and public_key_sn):
        fail("give --aes-key, --aes-sn, --public-key and --public-key-sn (or --off)")
        return
    try:
        policy.set_security(
            appid, parse_aes_key(aes_key), aes_sn, public_key.read_bytes(), public_key_sn
        )
    except ServiceError as exc:
        fail(exc.message)
    click.echo(f"API-security mode on for {appid}")


@click.command("allow-ip")
@click.option("--appid", required=True)
@click.argument("cidrs", nargs=-1)
@click.option("--clear", is_flag=True, help="Remove the list: any address may call.")
@DATA_DIR_OPTION
def apps_allow_ip(appid: str, cidrs: tuple[str, ...], clear: bool, data_dir: Path | None) -> None:
    """Set APPID's IP allow-list to CIDRS (replacing it); others get 40164."""
    if clear == bool(cidrs):
        fail("give CIDR... or --clear")
    try:
        nets = _policy(data_dir).set_allowed(appid, [] if clear else list(cidrs))
    except ServiceError as exc:
        fail(exc.message)
        return
    click.echo(
        f"{appid} may call from: {', '.join(nets)}" if nets else f"{appid} may call from anywhere"
    )


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
    try:
        _components(data_dir).set_callback(callback, component_appid)
    except ServiceError as exc:
        fail(exc.message)
    click.echo(f"tickets for {component_appid} " + ("not pushed" if off else f"pushed to {url}"))
