"""``EventBuffer`` / ``AsyncEventBuffer``: flushes on size, time, close and exit; bounded."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.client.faults import B, EventsServer, sent_lines
from tests.server import SECRET
from userportrait.client import (
    AsyncClient,
    AsyncEventBuffer,
    BufferFull,
    BufferStats,
    Client,
    EventBuffer,
    EventsNotSent,
    Retry,
)

KEY = "upik_" + "k" * 43


def visit(i: int) -> dict[str, Any]:
    return {"openid": f"u{i}", "ts": 1718000000 + i, "model": "iPhone 13<iPhone14,5>"}


class Recorder:
    """A server that accepts everything and records each request's events."""

    def __init__(self, gate: threading.Event | None = None, status: int = 200) -> None:
        self.sent: list[list[dict[str, Any]]] = []
        self.gate = gate
        self.status = status
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/cgi-bin/token":
            return httpx.Response(200, json={"access_token": "t" * 64, "expires_in": 7200})
        if self.gate is not None:
            self.gate.wait(10)
        lines = sent_lines(request)
        with self.lock:
            self.sent.append(lines)
        if self.status != 200:
            return httpx.Response(self.status, headers={"Retry-After": "0"},
                                  json={"errcode": -1, "errmsg": "system busy rid: a"})  # fmt: skip
        return httpx.Response(200, json={"errcode": 0, "errmsg": "ok", "accepted": len(lines),
                                         "rejected": []})  # fmt: skip

    def sizes(self) -> list[int]:
        with self.lock:
            return [len(s) for s in self.sent]


def client(server: Recorder) -> Client:
    return Client("http://x", B, SECRET, httpx.MockTransport(server), ingest_key=KEY,
                  retry=Retry(attempts=2, backoff_s=0.001))  # fmt: skip


def until(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_flushes_on_size_then_on_close() -> None:
    server = Recorder()
    with client(server) as c, EventBuffer(c, max_events=100, max_interval_s=60) as buf:
        for i in range(100):
            buf.add(visit(i))
        assert until(lambda: server.sizes() == [100])
        for i in range(100, 150):
            buf.add(visit(i))
        time.sleep(0.2)
        assert server.sizes() == [100] and len(buf) == 50  # below both thresholds
    assert server.sizes() == [100, 50]  # leaving the block closed it: the rest went out
    assert buf.stats == BufferStats(added=150, accepted=150, sends=2)
    assert [e["openid"] for s in server.sent for e in s] == [f"u{i}" for i in range(150)]


def test_flushes_on_time_and_fills_ts_at_add() -> None:
    server = Recorder()
    with client(server) as c, EventBuffer(c, max_events=1000, max_interval_s=0.2) as buf:
        started = time.monotonic()
        buf.add({"openid": "a"})
        buf.add(visit(1))
        assert until(lambda: server.sizes() == [2])
        assert 0.15 < time.monotonic() - started < 5
    first, second = server.sent[0]
    assert first["ts"].endswith("+00:00") and first["appid"] == B and len(first["event_id"]) == 32
    assert second["ts"] == 1718000001


def test_a_failed_send_is_logged_and_handed_to_on_error(caplog: pytest.LogCaptureFixture) -> None:
    failed: list[tuple[list[dict[str, Any]], BaseException]] = []
    server = Recorder(status=503)
    with client(server) as c:
        buf = EventBuffer(c, max_events=10, on_error=lambda ev, exc: failed.append((ev, exc)))
        for i in range(3):
            buf.add(visit(i))
        with caplog.at_level(logging.ERROR, "userportrait.client"):
            buf.close()
    assert server.sizes() == [3, 3]  # tried twice (attempts=2), then given up
    (events, exc), = failed  # fmt: skip
    assert [e["openid"] for e in events] == ["u0", "u1", "u2"]
    assert events == server.sent[0]  # with the event ids they were sent with
    assert isinstance(exc, EventsNotSent)
    assert buf.stats == BufferStats(added=3, failed=3, sends=1)
    assert "sending 3 event(s) to userportrait failed" in caplog.text
    with pytest.raises(RuntimeError, match="closed"):
        buf.add(visit(9))


def test_full_buffer_drops_the_oldest_and_says_so() -> None:
    gate = threading.Event()
    server = Recorder(gate)
    dropped: list[tuple[list[dict[str, Any]], BaseException]] = []
    with client(server) as c:
        buf = EventBuffer(c, max_events=4, max_buffer=4,
                          on_error=lambda ev, exc: dropped.append((ev, exc)))  # fmt: skip
        for i in range(4):
            buf.add(visit(i))
        assert until(lambda: len(buf) == 0)  # taken by the flusher, which waits at the gate
        for i in range(4, 10):
            buf.add(visit(i))  # room for 4: u4 and u5 are pushed out
        gate.set()
        buf.close()
    assert [[e["openid"] for e in ev] for ev, _ in dropped] == [["u4"], ["u5"]]
    assert all(isinstance(exc, BufferFull) for _, exc in dropped)
    assert server.sizes() == [4, 4]
    assert buf.stats == BufferStats(added=10, accepted=8, dropped=2, sends=2)


def test_full_buffer_blocks_when_asked() -> None:
    gate = threading.Event()
    server = Recorder(gate)
    with client(server) as c:
        buf = EventBuffer(c, max_events=2, max_buffer=2, when_full="block")
        buf.add(visit(0))
        buf.add(visit(1))
        assert until(lambda: len(buf) == 0)
        buf.add(visit(2))
        buf.add(visit(3))
        late = threading.Thread(target=buf.add, args=(visit(4),))
        late.start()
        time.sleep(0.2)
        assert late.is_alive()  # waiting for room
        gate.set()
        late.join(5)
        buf.close()
    assert sorted(e["openid"] for s in server.sent for e in s) == [f"u{i}" for i in range(5)]
    assert buf.stats.dropped == 0 and buf.stats.accepted == 5


def test_many_threads_against_the_real_server(events_server: EventsServer) -> None:
    with Client(events_server.url, B, ingest_key=events_server.key) as c:
        with EventBuffer(c, max_events=300, max_interval_s=0.05) as buf:

            def work(t: int) -> None:
                for i in range(500):
                    buf.add(visit(t * 1000 + i))

            threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
    assert buf.stats.added == buf.stats.accepted == 4000 and buf.stats.failed == 0
    assert events_server.stored() == 4000


def test_a_buffer_needs_a_client_with_the_ingest_key() -> None:
    with Client("http://x", B, SECRET) as c, pytest.raises(ValueError, match="ingest key"):
        EventBuffer(c)
    with pytest.raises(ValueError, match="ingest key"):
        AsyncEventBuffer(AsyncClient("http://x", B, SECRET))


def test_flushed_at_interpreter_exit() -> None:
    code = """if True:
        import httpx
        from userportrait.client import Client, EventBuffer
        def server(request):
            if request.url.path == "/cgi-bin/token":
                return httpx.Response(200, json={"access_token": "t" * 64, "expires_in": 7200})
            n = len(request.content and __import__("gzip").decompress(request.content).splitlines())
            print("sent", n, flush=True)
            return httpx.Response(200, json={"errcode": 0, "errmsg": "ok", "accepted": n, "rejected": []})
        c = Client("http://x", "wxb000000000000017", "s", httpx.MockTransport(server),
                   ingest_key="upik_k")
        buf = EventBuffer(c, max_interval_s=60)
        for i in range(3):
            buf.add({"openid": f"u{i}", "ts": 1718000000})
        print("exiting", flush=True)
    """
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "exiting\nsent 3\n"


def test_async_twin(events_server: EventsServer) -> None:
    async def run() -> BufferStats:
        async with AsyncClient(events_server.url, B, ingest_key=events_server.key) as c:
            async with AsyncEventBuffer(c, max_events=100, max_interval_s=60) as buf:
                for sends in (1, 2):
                    for i in range(100):
                        await buf.add(visit(sends * 1000 + i))
                    for _ in range(500):
                        if buf.stats.sends == sends:
                            break
                        await asyncio.sleep(0.01)
                    assert buf.stats.sends == sends and len(buf) == 0
                for i in range(50):
                    await buf.add(visit(i))
                await asyncio.sleep(0.1)
                assert buf.stats.sends == 2 and len(buf) == 50  # below both thresholds
            return buf.stats

    assert asyncio.run(run()) == BufferStats(added=250, accepted=250, sends=3)
    assert events_server.stored() == 250


def test_async_flushes_on_time_and_drops_at_exit_loudly(caplog: pytest.LogCaptureFixture) -> None:
    server = Recorder()
    lost: list[list[dict[str, Any]]] = []

    async def run() -> AsyncEventBuffer:
        async with AsyncClient("http://x", B, SECRET, httpx.MockTransport(server),
                               ingest_key=KEY) as c:  # fmt: skip
            buf = AsyncEventBuffer(c, max_interval_s=0.1, on_error=lambda ev, _: lost.append(ev))
            await buf.start()
            await buf.add(visit(0))
            for _ in range(300):
                if server.sizes():
                    break
                await asyncio.sleep(0.01)
            assert server.sizes() == [1]
            await buf.add(visit(1))  # never closed: at exit it is reported, not sent
            return buf

    buf = asyncio.run(run())
    with caplog.at_level(logging.ERROR, "userportrait.client"):
        buf._at_exit()
    assert [[e["openid"] for e in ev] for ev in lost] == [["u1"]]
    assert "sending 1 event(s) to userportrait failed" in caplog.text
