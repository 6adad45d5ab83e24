"""``serve``: the WeChat-compatible API, the native /v1 API and the dashboard."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from userportrait.cli.common import (
    DATA_DIR_OPTION,
    ENGINE_OPTION,
    configure_logging,
    make_settings,
)

if TYPE_CHECKING:
    from fastapi import FastAPI

    from userportrait.settings import Settings


@click.command()
@DATA_DIR_OPTION
@click.option("--host", default=None, help="Address to bind [default 127.0.0.1].")
@click.option("--port", default=None, type=int, help="Port [default 8000; 0 = any free].")
@ENGINE_OPTION
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
    from userportrait.app import create_app
    from userportrait.store.sqlite import private_dir

    overrides: dict[str, object] = {"host": host, "port": port, "engine": engine}
    if no_wechat_limits:
        overrides["wechat_limits"] = False
    settings = make_settings(data_dir, **overrides)
    # Opened here, not first in the lifespan: a newer data directory is one line, not a
    # traceback of uvicorn's start-up (store/format.py).
    private_dir(settings.data_dir)
    app = create_app(settings)
    if get_path:
        sys.exit(_one_get(app, get_path))
    # Access lines come from userportrait.access as JSON (rid, method, path, status, ms).
    run_server(app, settings, "info")


def run_server(app: FastAPI, settings: Settings, log_level: str) -> None:
    """uvicorn on the settings' host and port, as ``serve`` and ``demo`` run it: on
    SIGINT/SIGTERM it stops accepting, lets requests finish (10 s at most), then runs the
    lifespan shutdown (live ingestion flushes, the engine closes)."""
    import uvicorn

    from userportrait.http_timeouts import server_options

    configure_logging(settings, logging.getLevelNamesMapping()[log_level.upper()])
    # log_config=None: uvicorn's loggers propagate to the root's one handler (logs.py).
    uvicorn.run(
        app, host=settings.host, port=settings.port, log_level=log_level, access_log=False,
        log_config=None,
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
