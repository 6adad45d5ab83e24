"""CLI commands of the server side: ``serve`` and ``apps``."""

from __future__ import annotations

import logging
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from userportrait.cli_common import DATA_DIR_OPTION, fail, make_settings
from userportrait.errors import ServiceError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from userportrait.auth.store import AuthStore


@click.command()
@DATA_DIR_OPTION
@click.option("--host", default=None, help="Address to bind [default 127.0.0.1].")
@click.option("--port", default=None, type=int, help="Port [default 8000; 0 = any free].")
@click.option(
    "--engine",
    default=None,
    help="incremental (default; the incremental store), sql (one DuckDB query over the lake), reference (pure Python, row by row) or spark (Spark SQL over the lake; the spark extra).",
)
@click.option("--no-wechat-limits", is_flag=True, help="Allow any window on the datacube API.")
@click.option(
    "--get", "get_path", default=None, help="Make one GET request in-process, print it, exit."
)
def serve(
    data_dir: Path | None, host: str | None, port: int | None, engine: str | None,
    no_wechat_limits: bool, get_path: str | None,
) -> None:  # fmt: skip
    """Serve the WeChat-compatible API and the native /v1 API.

    SDKs only need their base URL pointed here; register apps first with `apps add`.
    """
    import uvicorn

    from userportrait.app import create_app
    from userportrait.http_timeouts import server_options

    overrides: dict[str, object] = {"host": host, "port": port, "engine": engine}
    if no_wechat_limits:
        overrides["wechat_limits"] = False
    settings = make_settings(data_dir, **overrides)
    app = create_app(settings)
    if get_path:
        sys.exit(_one_get(app, get_path))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # Access lines come from userportrait.access as JSON (rid, method, path, status, ms);
    # on SIGINT/SIGTERM uvicorn stops accepting, lets requests finish (10 s at most), then
    # runs the lifespan shutdown (live ingestion flushes, the engine closes).
    uvicorn.run(
        app, host=settings.host, port=settings.port, log_level="info", access_log=False,
        timeout_graceful_shutdown=10, **server_options(settings),
    )  # fmt: skip


def _one_get(app: FastAPI, path: str) -> int:
    """datasette-style smoke test: one in-process GET, body printed; 0 unless an error."""
    import asyncio

    import httpx

    async def get() -> httpx.Response:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
                return await c.get(path)

    res = asyncio.run(get())
    click.echo(res.text)
    try:
        body = res.json()
    except ValueError:
        body = None
    failed = isinstance(body, dict) and body.get("errcode", 0) != 0
    return 1 if res.status_code != 200 or failed else 0


@click.group()
def apps() -> None:
    """Register and manage the apps (appid + secret) that may call the API."""


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
    try:
        _store(data_dir).add_app(appid, secret)
    except ServiceError as exc:
        fail(exc.message)
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
    try:
        _store(data_dir).remove_app(appid)
    except ServiceError as exc:
        fail(exc.message)
    click.echo(f"removed {appid}")


@apps.command("rotate-secret")
@click.option("--appid", required=True)
@DATA_DIR_OPTION
def apps_rotate(appid: str, data_dir: Path | None) -> None:
    """Give an app a new secret (shown once); its old tokens stop working."""
    secret = secrets.token_hex(16)
    try:
        _store(data_dir).set_secret(appid, secret)
    except ServiceError as exc:
        fail(exc.message)
    click.echo(f"new secret for {appid} (shown once): {secret}")


@apps.command("ingest-key")
@click.option("--appid", required=True)
@DATA_DIR_OPTION
def apps_ingest_key(appid: str, data_dir: Path | None) -> None:
    """Print a new write-only ingest key for APPID (shown once) and retire the previous.

    POST /v1/events and /v1/profiles take it as `Authorization: Bearer KEY`; it reads
    nothing, and read tokens write nothing (docs/api.md "Migrating to ingest keys").
    """
    try:
        key = _store(data_dir).new_ingest_key(appid)
    except ServiceError as exc:
        fail(exc.message)
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
    try:
        Thresholds(make_settings(data_dir).data_dir / "meta.sqlite").set(appid, None if off else k)
    except ServiceError as exc:
        fail(exc.message)
    click.echo(f"{appid}: small-count threshold " + ("off" if off else f"k={k}"))
