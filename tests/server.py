"""The app in-process (ASGI + lifespan) and as a real uvicorn server on port 0.

Loaded as a plugin by conftest (``pytest_plugins``), so ``real_server`` is one server for the
whole session: uvicorn in a thread on 127.0.0.1, port 0, the port read back from its socket.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from tests.conftest import load
from tests.fixtures import EVENTS, A
from userportrait.app import create_app
from userportrait.auth.store import AuthStore
from userportrait.http_timeouts import server_options
from userportrait.settings import Settings
from userportrait.store.lake import Lake

SECRET = "s3cret-s3cret"
PATH = "/datacube/getweanalysisappiduserportrait"
CLOUD = "/wxa/cloud/analysis.getUserPortrait"
BODY = {"begin_date": "20240610", "end_date": "20240612"}
RID = r"[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}"
WECHAT_JSON = "application/json; encoding=utf-8"


@asynccontextmanager
async def app_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


@asynccontextmanager
async def asgi_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(create_app(settings)) as c:
        yield c


@contextmanager
def live_server(settings: Settings, wrap: Callable[[Any], Any] | None = None) -> Iterator[str]:
    """uvicorn in a thread on 127.0.0.1, port 0; yields the base URL.

    ``wrap`` wraps the app (an ASGI middleware of the test's, e.g. one injecting faults).
    """
    app = create_app(settings)
    config = uvicorn.Config(
        wrap(app) if wrap else app, host="127.0.0.1", port=0, log_level="warning", access_log=False,
        **server_options(settings),
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def prepare(settings: Settings) -> Settings:
    """The fixture events ingested, app A registered, WeChat limits off (the dates are 2024)."""
    load(Lake(settings), EVENTS)
    AuthStore(settings.data_dir / "meta.sqlite").add_app(A, SECRET)
    return settings.replace(wechat_limits=False)


@dataclass(frozen=True)
class RealServer:
    url: str
    settings: Settings


@pytest.fixture(scope="session")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    data = tmp_path_factory.mktemp("real-server") / "data"
    settings = prepare(Settings(data_dir=data, duckdb_memory_limit_mb=512))
    with live_server(settings) as url:
        yield RealServer(url, settings)


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    return prepare(settings)


def ingest_headers(settings: Settings, appid: str = A) -> dict[str, str]:
    """``Authorization`` with a new ingest key of ``appid``: what writes take (issue 24)."""
    key = AuthStore(settings.data_dir / "meta.sqlite").new_ingest_key(appid)
    return {"Authorization": f"Bearer {key}"}


async def token(c: httpx.AsyncClient, appid: str = A, secret: str = SECRET) -> str:
    res = await c.get(
        "/cgi-bin/token",
        params={"grant_type": "client_credential", "appid": appid, "secret": secret},
    )
    body = res.json()
    assert body["expires_in"] == 7200 and len(body["access_token"]) >= 64, body
    return str(body["access_token"])


def assert_error(res: httpx.Response, errcode: int, text: str, status: int = 200) -> str:
    """The exact WeChat error shape; returns the rid."""
    assert res.status_code == status, res.text
    assert res.headers["content-type"] == WECHAT_JSON
    body = res.json()
    assert set(body) == {"errcode", "errmsg"}, body
    assert body["errcode"] == errcode, body
    match = re.fullmatch(rf"(.*) rid: ({RID})", body["errmsg"])
    assert match, body
    assert match.group(1).startswith(text), body
    assert res.headers["x-request-id"] == match.group(2)
    assert abs(int(match.group(2)[:8], 16) - time.time()) < 60  # first group: Unix time
    return match.group(2)


def assert_cloud_error(res: httpx.Response, errcode: int, text: str) -> None:
    assert res.status_code == 200, res.text
    assert res.headers["content-type"] == WECHAT_JSON
    body = res.json()
    assert set(body) == {"errCode", "errMsg"}, body
    assert body["errCode"] == errcode, body
    prefix = "openapi.analysis.getUserPortrait:fail "
    match = re.fullmatch(rf"{re.escape(prefix)}(.*) rid: ({RID})", body["errMsg"])
    assert match and match.group(1).startswith(text), body
