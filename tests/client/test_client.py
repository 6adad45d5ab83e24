"""The Python client: against the real server, with MockTransport, and its import weight."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

import userportrait.client as client_pkg
from tests.fixtures import WINDOW_0610_0612, A
from tests.server import SECRET, RealServer
from userportrait.client import (
    AsyncClient,
    AuthError,
    Client,
    DailyQuotaExceeded,
    InvalidAppSecret,
    InvalidCredential,
    InvalidDate,
    InvalidDateRange,
    QuotaExceeded,
    Retry,
    ServiceError,
    TransportError,
)
from userportrait.portrait.export import portrait_csv


def test_client_against_the_real_server(real_server: RealServer) -> None:
    with Client(real_server.url, A, SECRET) as c:
        assert c.portrait("20240610", dt.date(2024, 6, 12)) == WINDOW_0610_0612
        assert c.native_portrait("2024-06-10", "20240612") == WINDOW_0610_0612
        csv = c.native_portrait("20240610", "20240612", format="csv")
        assert csv == portrait_csv(WINDOW_0610_0612)
        with pytest.raises(InvalidDate) as info:
            c.portrait("2024", "20240612")
        assert info.value.errcode == 61500 and " rid: " in str(info.value)
        assert info.value.detail == "begin_date '2024' is not yyyymmdd"
        with pytest.raises(InvalidDateRange):
            c.portrait("20240612", "20240610")
    with Client(real_server.url, A, "wrong-secret") as c, pytest.raises(InvalidAppSecret):
        c.portrait("20240610", "20240612")


def test_async_client_against_the_real_server(real_server: RealServer) -> None:
    async def run() -> list[Any]:
        async with AsyncClient(real_server.url, A, SECRET) as c:
            return [await c.portrait("20240610", "20240612"),
                    await c.native_portrait("20240610", "20240612")]  # fmt: skip

    assert asyncio.run(run()) == [WINDOW_0610_0612, WINDOW_0610_0612]


def test_50_parallel_clients_get_identical_answers(real_server: RealServer) -> None:
    def one(i: int) -> Any:
        with Client(real_server.url, A, SECRET) as c:
            if i % 2:
                return c.portrait("20240610", "20240612")
            return c.native_portrait("20240610", "20240612")

    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(one, range(50)))
    assert all(a == WINDOW_0610_0612 for a in answers)


class FakeServer:
    """Counts token fetches; answers 40001 to the first datacube call if asked to."""

    def __init__(self, reject_first: int | None = None) -> None:
        self.tokens = 0
        self.calls: list[str] = []
        self.reject_first = reject_first

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/cgi-bin/token":
            self.tokens += 1
            return httpx.Response(
                200, json={"access_token": f"t{self.tokens}" * 32, "expires_in": 7200}
            )
        self.calls.append(request.url.params["access_token"])
        if self.reject_first is not None and len(self.calls) == 1:
            return httpx.Response(200, json={"errcode": self.reject_first,
                                             "errmsg": "access_token expired rid: 1-2-3"})  # fmt: skip
        return httpx.Response(200, json=WINDOW_0610_0612)


def test_tokens_cached_and_refreshed_before_expiry() -> None:
    fake, now = FakeServer(), [1000.0]
    with Client("http://x", A, SECRET, httpx.MockTransport(fake), now=lambda: now[0]) as c:
        for _ in range(3):
            c.portrait("20240610", "20240612")
        assert fake.tokens == 1
        now[0] += 7200 - 61
        c.portrait("20240610", "20240612")
        assert fake.tokens == 1
        now[0] += 2  # inside the 60 s margin
        c.portrait("20240610", "20240612")
        assert fake.tokens == 2


@pytest.mark.parametrize("code", [40001, 42001])
def test_retry_once_with_a_new_token(code: int) -> None:
    fake = FakeServer(reject_first=code)
    with Client("http://x", A, SECRET, httpx.MockTransport(fake)) as c:
        assert c.portrait("20240610", "20240612") == WINDOW_0610_0612
    assert fake.tokens == 2 and fake.calls[0] != fake.calls[1]


def test_async_retry_and_mock_transport() -> None:
    fake = FakeServer(reject_first=40001)

    async def run() -> Any:
        async with AsyncClient("http://x", A, SECRET, httpx.MockTransport(fake)) as c:
            return await c.portrait("20240610", "20240612")

    assert asyncio.run(run()) == WINDOW_0610_0612 and fake.tokens == 2


def test_no_endless_retry() -> None:
    def always_invalid(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/cgi-bin/token":
            return httpx.Response(200, json={"access_token": "t" * 64, "expires_in": 7200})
        return httpx.Response(200, json={"errcode": 40001, "errmsg": "invalid credential rid: x"})

    with Client("http://x", A, SECRET, httpx.MockTransport(always_invalid)) as c:
        with pytest.raises(InvalidCredential) as info:
            c.portrait("20240610", "20240612")
    assert isinstance(info.value, AuthError)


@pytest.mark.parametrize(
    ("body", "cls", "code"),
    [({"errcode": 45009, "errmsg": "reach max api daily quota limit rid: a"}, DailyQuotaExceeded, 45009),
     ({"errcode": 40164, "errmsg": "invalid ip 1.2.3.4, not in whitelist rid: a"}, ServiceError, 40164),
     ({"errcode": -1, "errmsg": "system error rid: a"}, ServiceError, -1)],
)  # fmt: skip
def test_errcodes_map_to_the_server_classes(body: dict[str, Any], cls: type, code: int) -> None:
    with Client("http://x", A, SECRET, httpx.MockTransport(
        lambda r: httpx.Response(200, json={"access_token": "t" * 64, "expires_in": 7200}
                                 if r.url.path == "/cgi-bin/token" else body))) as c:  # fmt: skip
        with pytest.raises(cls) as info:
            c.portrait("20240610", "20240612")
    assert info.value.errcode == code and str(info.value) == body["errmsg"]
    if code == 45009:
        assert isinstance(info.value, QuotaExceeded)


def test_transport_errors() -> None:
    def not_json(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>bad gateway</html>")

    with Client("http://x", A, SECRET, httpx.MockTransport(not_json)) as c:
        with pytest.raises(TransportError):
            c.portrait("20240610", "20240612")


def test_all_is_sorted_and_complete() -> None:
    assert client_pkg.__all__ == sorted(client_pkg.__all__)
    assert all(hasattr(client_pkg, name) for name in client_pkg.__all__)


def test_importing_the_client_is_light() -> None:
    code = ("import sys, userportrait.client; "
            "heavy = ('duckdb', 'fastapi', 'starlette', 'uvicorn', 'pyarrow', 'numpy', "
            "'userportrait.engine', 'userportrait.store', 'userportrait.app'); "
            "bad = [m for m in heavy if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")  # fmt: skip
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_a_busy_token_call_is_retried() -> None:
    """-1 system busy (503: the secret checks' queue was full) is worth another try."""
    answers = iter([503, 503, 200])

    def server(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/cgi-bin/token":
            status = next(answers)
            if status == 503:
                return httpx.Response(503, headers={"Retry-After": "0"}, json={
                    "errcode": -1, "errmsg": "system busy, retry later rid: 1-2-3"})  # fmt: skip
            return httpx.Response(200, json={"access_token": "t" * 64, "expires_in": 7200})
        return httpx.Response(200, json=WINDOW_0610_0612)

    retry = Retry(attempts=3, backoff_s=0.001)
    with Client("http://x", A, SECRET, httpx.MockTransport(server), retry=retry) as c:
        assert c.portrait("20240610", "20240612") == WINDOW_0610_0612

    async def run() -> Any:
        nonlocal answers
        answers = iter([503, 200])
        transport = httpx.MockTransport(server)
        async with AsyncClient("http://x", A, SECRET, transport, retry=retry) as ac:
            return await ac.portrait("20240610", "20240612")

    assert asyncio.run(run()) == WINDOW_0610_0612
