"""Issue 24: ``/v1/events`` bodies are parsed off the event loop, bounded in depth and in number."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import tracemalloc
from typing import Any

import httpx
import pytest

import userportrait.api.events
from tests.ingest.test_live import SECRET, A, ev
from tests.server import RID, app_client, asgi_client, ingest_headers
from userportrait.app import create_app
from userportrait.auth.store import AuthStore
from userportrait.ingest.records import TOO_DEEP, parse_records
from userportrait.settings import Settings

#: 16 MiB bodies like the issue's: one array of elements nested 1,000 levels; NDJSON lines
#: of many small nested arrays after a good first record.
DEEP = b"[" + b",".join([b"[" * 999 + b"]" * 999] * 8390) + b"]"
NESTED = b'{"appid": "wx1"}\n' + (b"[" + b",".join([b"[[[[]]]]"] * 200) + b"]\n") * 9300


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def live_settings(settings: Settings) -> Settings:
    AuthStore(settings.data_dir / "meta.sqlite").add_app(A, SECRET)
    return settings.replace(wechat_limits=False, live_flush_interval_ms=100)


@pytest.mark.anyio
async def test_a_deeply_nested_body_is_refused_naming_the_nesting(
    live_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    async with asgi_client(live_settings) as c:
        res = await c.post("/v1/events", headers=ingest_headers(live_settings, A), content=DEEP)
    answer = res.json()
    assert answer["errcode"] == 47001
    assert re.fullmatch(
        r"data format error: body is nested deeper than 3 levels "
        rf"\(a JSON array of records, each an object of scalars\) rid: {RID}",
        answer["errmsg"],
    )
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_nesting_is_refused_before_anything_is_built() -> None:
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="nested deeper than 3 levels"):
            parse_records(DEEP, max_records=10_000)
        deep_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        records = parse_records(NESTED, max_records=10_000)
        nested_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert records == [{"appid": "wx1"}] + [TOO_DEEP] * 9300
    # The bytes scan costs a few copies of the body; building these took 45x (786 MiB).
    assert deep_peak < 6 * len(DEEP)
    assert nested_peak < 2 * len(NESTED)  # a copy, looking for long digits


@pytest.mark.anyio
async def test_healthz_answers_while_a_body_is_parsed(
    live_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered, release, returned = threading.Event(), threading.Event(), threading.Event()

    def blocked_parse(body: bytes, max_records: int | None = None) -> list[Any]:
        entered.set()
        release.wait(timeout=10)  # on the loop (the old code), this blocks it 10 s
        returned.set()
        return parse_records(body, max_records)

    monkeypatch.setattr(userportrait.api.events, "parse_records", blocked_parse)
    async with asgi_client(live_settings) as c:
        headers = ingest_headers(live_settings, A)
        post = asyncio.create_task(c.post("/v1/events", headers=headers, json=[ev(1)]))
        while not entered.is_set():
            assert not post.done(), (await post).text  # refused before the parse: no hang
            await asyncio.sleep(0.01)
        health = await asyncio.wait_for(c.get("/healthz"), timeout=30)
        parse_was_running = not returned.is_set()
        release.set()
        res = await post
    assert health.status_code == 200
    assert parse_was_running  # /healthz was answered while the parse was still blocked
    assert res.json() == {"errcode": 0, "errmsg": "ok", "accepted": 1, "rejected": []}


@pytest.mark.anyio
async def test_parses_beyond_the_slots_and_queue_get_busy(
    live_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = live_settings.replace(live_parses_concurrent=1, live_parses_queue=1)
    running, release = threading.Semaphore(0), threading.Event()

    def blocked_parse(body: bytes, max_records: int | None = None) -> list[Any]:
        running.release()
        release.wait(timeout=10)
        return parse_records(body, max_records)

    monkeypatch.setattr(userportrait.api.events, "parse_records", blocked_parse)
    app = create_app(settings)
    async with app_client(app) as c:
        headers = ingest_headers(live_settings, A)

        def send(i: int) -> asyncio.Task[httpx.Response]:
            return asyncio.create_task(c.post("/v1/events", headers=headers, json=[ev(i)]))

        first = send(1)
        await asyncio.to_thread(running.acquire, timeout=10)  # parsing: the one slot
        second = send(2)
        slots = app.state.parse_slots
        while slots._waiting < 1:
            assert not second.done(), (await second).text
            await asyncio.sleep(0.01)
        third = await send(3)  # the queue is full too
        release.set()
        answers = [(await first).json(), (await second).json()]
    assert third.status_code == 503
    assert third.headers["retry-after"] == "1"
    assert third.json()["errcode"] == -1
    assert re.fullmatch(
        rf"system busy, retry later: too many request bodies being parsed at once rid: {RID}",
        third.json()["errmsg"],
    )
    assert answers == [{"errcode": 0, "errmsg": "ok", "accepted": 1, "rejected": []}] * 2
