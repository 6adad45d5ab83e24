"""A real server for sending events, and transports that fail an attempt AFTER it was served.

``Faults`` forwards every request to the real server; for the ``/v1/events`` attempts it is
told to spoil, it reads the server's answer (so the events are in the WAL) and then
hands the client a 429/503 or a dropped connection instead, as a proxy or a flaky
network would. The client must resend the same batch, and the store must hold it once.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tests.server import SECRET, live_server
from userportrait.auth.store import AuthStore
from userportrait.settings import Settings
from userportrait.store.lake import Lake

B = "wxb000000000000017"
EVENTS_PATH = "/v1/events"


class Spoiler:
    """ASGI wrapper: the next /v1/events requests, one per status in ``faults``, are
    served by the app and then answered with that status instead (for clients that bring
    their own HTTP stack, like the Node sender)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.faults: list[int] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != EVENTS_PATH or not self.faults:
            await self.app(scope, receive, send)
            return
        status = self.faults.pop(0)

        async def discard(message: Message) -> None:
            pass

        await self.app(scope, receive, discard)
        body = json.dumps({"errcode": -1, "errmsg": "system busy, retry later rid: 0-0-0"})
        headers = [(b"content-type", b"application/json"), (b"retry-after", b"0")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body.encode()})


@dataclass(frozen=True)
class EventsServer:
    url: str
    settings: Settings
    running: ExitStack
    spoiler: Spoiler
    key: str  # B's ingest key: what sends take (issue 24)

    def stored(self, appid: str = B) -> int:
        """Events of ``appid`` in the lake, once the server stopped (so all WAL is loaded)."""
        self.running.close()
        paths = Lake(self.settings).paths(appid)
        if not paths:
            return 0
        with duckdb.connect() as con:
            row = con.execute("SELECT count(*) FROM read_parquet(?)", [paths]).fetchone()
        assert row is not None
        return int(row[0])


@pytest.fixture
def events_server(tmp_path: Path) -> Iterator[EventsServer]:
    """A server of its own: at most 1,000 records a request, flushed every 50 ms."""
    settings = Settings(
        data_dir=tmp_path / "data", duckdb_memory_limit_mb=256, wechat_limits=False,
        live_max_batch_records=1000, live_flush_interval_ms=50,
    )  # fmt: skip
    settings.data_dir.mkdir(parents=True)
    auth = AuthStore(settings.data_dir / "meta.sqlite")
    auth.add_app(B, SECRET)
    key = auth.new_ingest_key(B)
    spoilers: list[Spoiler] = []

    def wrap(app: ASGIApp) -> Spoiler:
        spoilers.append(Spoiler(app))
        return spoilers[0]

    with ExitStack() as running:
        url = running.enter_context(live_server(settings, wrap))
        yield EventsServer(url, settings, running, spoilers[0], key)


def sent_lines(request: httpx.Request) -> list[dict[str, Any]]:
    data = request.content
    if request.headers.get("content-encoding") == "gzip":
        data = gzip.decompress(data)
    return [json.loads(line) for line in data.splitlines()]


def _spoiled(fault: str) -> httpx.Response:
    if fault == "drop":
        raise httpx.ReadError("connection reset after the server answered")
    status, _, retry_after = fault.partition(":")
    return httpx.Response(
        int(status), headers={"Retry-After": retry_after or "0"},
        json={"errcode": -1, "errmsg": "system busy, retry later rid: 0-0-0"},
    )  # fmt: skip


class Faults(httpx.BaseTransport):
    """``faults[i]`` spoils the i-th /v1/events attempt: "ok", "503", "429:3", "drop"."""

    def __init__(self, *faults: str) -> None:
        self.inner = httpx.HTTPTransport()
        self.faults = list(faults)
        self.attempts: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        res = self.inner.handle_request(request)
        if request.url.path != EVENTS_PATH:
            return res
        self.attempts.append(request)
        fault = self.faults.pop(0) if self.faults else "ok"
        if fault == "ok":
            return res
        res.read()
        res.close()
        return _spoiled(fault)

    def close(self) -> None:
        self.inner.close()


class AsyncFaults(httpx.AsyncBaseTransport):
    def __init__(self, *faults: str) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.faults = list(faults)
        self.attempts: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        res = await self.inner.handle_async_request(request)
        if request.url.path != EVENTS_PATH:
            return res
        self.attempts.append(request)
        fault = self.faults.pop(0) if self.faults else "ok"
        if fault == "ok":
            return res
        await res.aread()
        await res.aclose()
        return _spoiled(fault)

    async def aclose(self) -> None:
        await self.inner.aclose()
