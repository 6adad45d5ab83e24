"""``apps …``: the apps (appid + secret) that may call the API, and each app's keys and
policy: ingest key, small-count threshold, API-security mode, IP allow-list.

Commands that print one value (a key, a serial) print it alone on the last line.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import TYPE_CHECKING

import click

from userportrait.cli.common import DATA_DIR_OPTION, fail, make_settings

if TYPE_CHECKING:
    from userportrait.auth.policy import Policy
    from userportrait.auth.store import AuthStore


@click.group()
def apps() -> None:
    """Register and manage the apps (appid + secret) that may call the API."""


def _policy(data_dir: Path | None) -> Policy:
    from userportrait.auth.policy import Policy

    return Policy(make_settings(data_dir).data_dir / "access.sqlite")


def _store(data_dir: Path | None) -> AuthStore:
    from userportrait.auth.store import AuthStore

    settings = make_settings(data_dir)
    return AuthStore(settings.data_dir / "meta.sqlite")


@apps.command("add")
@click.option("--appid", required=True)
@click.option(
    "--secret", default=None, help="At least 8 characters; generated and shown once if omitted."
)
@DATA_DIR_OPTION
def apps_add(appid: str, secret: str | None, data_dir: Path | None) -> None:
    """Register an app. The secret is stored hashed and never shown again."""
    generated = secret is None
    secret = secret or secrets.token_hex(16)
    _store(data_dir).add_app(appid, secret)
    click.echo(f"registered {appid}" + (f"; secret (shown once): {secret}" if generated else ""))


@apps.command("list")
@DATA_DIR_OPTION
def apps_list(data_dir: Path | None) -> None:
    """List registered appids (never their secrets)."""
    import datetime as dt

    for appid, created in _store(data_dir).apps():
        click.echo(f"{appid}\tregistered {dt.datetime.fromtimestamp(created):%Y-%m-%d %H:%M}")


@apps.command("remove")
@click.option("--appid", required=True)
@DATA_DIR_OPTION
def apps_remove(appid: str, data_dir: Path | None) -> None:
    """Unregister an app; its tokens and ingest key stop working (its events stay)."""
    _store(data_dir).remove_app(appid)
    click.echo(f"removed {appid}")


@apps.command("rotate-secret")
@click.option("--appid", required=True)
@DATA_DIR_OPTION
def apps_rotate(appid: str, data_dir: Path | None) -> None:
    """Give an app a new secret (shown once); its old tokens stop working."""
    secret = secrets.token_hex(16)
    _store(data_dir).set_secret(appid, secret)
    click.echo(f"new secret for {appid} (shown once): {secret}")


@apps.command("ingest-key")
@click.option("--appid", required=True)
@DATA_DIR_OPTION
def apps_ingest_key(appid: str, data_dir: Path | None) -> None:
    """Print a new write-only ingest key for APPID (shown once) and retire the previous.

    POST /v1/events and /v1/profiles take it as `Authorization: Bearer KEY`; it reads
    nothing, and read tokens write nothing (docs/api.md "Migrating to ingest keys").
    """
    key = _store(data_dir).new_ingest_key(appid)
    click.echo(f"new ingest key for {appid} (shown once; the previous one no longer works):")
    click.echo(key)


@apps.command("threshold")
@click.option("--appid", required=True)
@click.option(
    "--k", "k", type=int, default=None, help="Fold rows below K users into 其他 (K >= 2)."
)
@click.option("--off", is_flag=True, help="Exact rows again (the default).")
@DATA_DIR_OPTION
def apps_threshold(appid: str, k: int | None, off: bool, data_dir: Path | None) -> None:
    """Protect an app's portraits with a small-count threshold, or switch it off.

    With it on, every answer for APPID (API, cloud form, exports, CLI unless --raw) folds
    rows below K into 其他, hides what subtraction would reveal, and only 1/7/30-day
    windows are answered (docs/privacy.md).
    """
    from userportrait.store.thresholds import Thresholds

    if (k is None) == (not off):
        fail("give either --k K or --off")
    Thresholds(make_settings(data_dir).data_dir / "meta.sqlite").set(appid, None if off else k)
    click.echo(f"{appid}: small-count threshold " + ("off" if off else f"k={k}"))


@apps.command("security")
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
    policy.set_security(
        appid, parse_aes_key(aes_key), aes_sn, public_key.read_bytes(), public_key_sn
    )
    click.echo(f"API-security mode on for {appid}")


@apps.command("allow-ip")
@click.option("--appid", required=True)
@click.argument("cidrs", nargs=-1)
@click.option("--clear", is_flag=True, help="Remove the list: any address may call.")
@DATA_DIR_OPTION
def apps_allow_ip(appid: str, cidrs: tuple[str, ...], clear: bool, data_dir: Path | None) -> None:
    """Set APPID's IP allow-list to CIDRS (replacing it); others get 40164."""
    if clear == bool(cidrs):
        fail("give CIDR... or --clear")
    nets = _policy(data_dir).set_allowed(appid, [] if clear else list(cidrs))
    click.echo(
        f"{appid} may call from: {', '.join(nets)}" if nets else f"{appid} may call from anywhere"
    )
