"""``Client`` / ``AsyncClient``: tokens fetched and cached, both portrait APIs, typed errors.

The two classes share everything but I/O (``_Session``): the token cache (refreshed
``refresh_margin_s`` before it expires) and the rule that a request rejected with
40001/42001 is retried once with a fresh token (the token may have been superseded by
another process or have run out early). ``send_events`` runs the steps of
``_events.send_plan`` (batches, retries, back-off), the same for both.

Reading and writing take different credentials (docs/api.md): portraits take tokens got with
``appid`` + ``secret``; ``send_events`` takes the app's write-only ``ingest_key``
(``userportrait apps ingest-key``), sent as ``Authorization: Bearer KEY``. A client that
only sends needs no secret.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final, Literal

import httpx

from userportrait.client import _events
from userportrait.client._events import EVENTS_PATH, MAX_BATCH_BYTES, MAX_BATCH_RECORDS, Ready
from userportrait.client._exceptions import TransportError, raise_for_body
from userportrait.client._models import Retry, SendSummary
from userportrait.errors import ServiceError

PORTRAIT_PATH: Final = "/datacube/getweanalysisappiduserportrait"
TOKEN_PATH: Final = "/cgi-bin/token"
RETRY_CODES: Final = frozenset({40001, 40014, 42001})
Format = Literal["json", "csv"]
DEFAULT_RETRY: Final = Retry()


def _day(value: dt.date | str) -> str:
    if isinstance(value, dt.date):  # four-digit years, as the server reads them
        return f"{value.year:04d}{value.month:02d}{value.day:02d}"
    return value


def _json(res: httpx.Response) -> Any:
    """The JSON body, or the mapped exception for an error body or a transport failure."""
    try:
        body = res.json()
    except ValueError:
        raise TransportError(f"HTTP {res.status_code}: the answer is not JSON") from None
    raise_for_body(body)
    if res.status_code >= 400:
        raise TransportError(f"HTTP {res.status_code}")
    return body


def _busy(res: httpx.Response) -> bool:
    """-1 ``system busy`` (HTTP 503): the secret checks' queue was full; worth a retry."""
    return res.status_code == 503


def _token_rejected(res: httpx.Response) -> bool:
    if "json" not in res.headers.get("content-type", ""):
        return False
    try:
        body = res.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("errcode") in RETRY_CODES


NO_INGEST_KEY: Final = (
    "sending events needs the app's ingest key: Client(..., ingest_key=KEY) "
    "(userportrait apps ingest-key --appid APPID prints one)"
)


class _Session:
    """Token state and request shapes, without I/O."""

    def __init__(
        self, appid: str, secret: str | None, ingest_key: str | None,
        refresh_margin_s: float, now: Callable[[], float],
    ) -> None:  # fmt: skip
        self.appid, self.secret, self.ingest_key = appid, secret, ingest_key
        self.margin = refresh_margin_s
        self.now = now
        self.token: str | None = None
        self.expires_at = 0.0

    def cached(self) -> str | None:
        if self.token is not None and self.now() < self.expires_at - self.margin:
            return self.token
        return None

    def token_params(self) -> dict[str, str]:
        return {"grant_type": "client_credential", "appid": self.appid, "secret": self.secret or ""}

    def store(self, body: Any) -> str:
        self.token = str(body["access_token"])
        self.expires_at = self.now() + int(body.get("expires_in", 7200))
        return self.token

    def portrait_request(self, begin: dt.date | str, end: dt.date | str) -> dict[str, Any]:
        return {"method": "POST", "url": PORTRAIT_PATH,
                "json": {"begin_date": _day(begin), "end_date": _day(end)}}  # fmt: skip

    def native_request(
        self, begin: dt.date | str, end: dt.date | str, format: Format
    ) -> dict[str, Any]:
        return {"method": "GET", "url": f"/v1/apps/{self.appid}/portrait",
                "params": {"begin": _day(begin), "end": _day(end), "format": format}}  # fmt: skip

    def ready(self, events: Iterable[Mapping[str, Any]]) -> list[tuple[int, Ready]]:
        self.check_ingest_key()
        return [(i, _events.ready(e, self.appid)) for i, e in enumerate(events)]

    def check_ingest_key(self) -> None:
        if not self.ingest_key:
            raise ValueError(NO_INGEST_KEY)

    def post(self, step: _events.Post) -> dict[str, Any]:
        """An events request: the ingest key, never a token (a 40001 is not retried)."""
        headers = {**step.headers, "Authorization": f"Bearer {self.ingest_key}"}
        return {"method": "POST", "url": EVENTS_PATH, "content": step.content, "headers": headers}


class Client:
    """Synchronous client. ``transport`` lets tests use ``httpx.MockTransport``."""

    def __init__(
        self,
        base_url: str,
        appid: str,
        secret: str | None = None,
        transport: httpx.BaseTransport | None = None,
        *,
        ingest_key: str | None = None,
        timeout: float = 30.0,
        refresh_margin_s: float = 60.0,
        now: Callable[[], float] = time.time,
        retry: Retry = DEFAULT_RETRY,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._session = _Session(appid, secret, ingest_key, refresh_margin_s, now)
        self._http = httpx.Client(base_url=base_url, transport=transport, timeout=timeout)
        self.retry = retry
        self._sleep = sleep

    @property
    def appid(self) -> str:
        return self._session.appid

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def access_token(self, refresh: bool = False) -> str:
        """The cached token, or a new one from ``/cgi-bin/token`` (a busy server's 503 is
        retried with back-off, as the server's ``Retry-After`` asks)."""
        token = None if refresh else self._session.cached()
        if token is None:
            for attempt in range(self.retry.attempts):
                res = self._http.get(TOKEN_PATH, params=self._session.token_params())
                if not _busy(res) or attempt == self.retry.attempts - 1:
                    break
                time.sleep(_events.wait_s(self.retry, attempt, _events.retry_after(res)))
            token = self._session.store(_json(res))
        return token

    def _send(self, request: dict[str, Any]) -> httpx.Response:
        params = request.pop("params", {})
        for attempt in (0, 1):
            token = self.access_token(refresh=attempt == 1)
            res = self._http.request(**request, params={**params, "access_token": token})
            if attempt == 0 and _token_rejected(res):
                continue
            return res
        raise AssertionError("unreachable")

    def portrait(self, begin: dt.date | str, end: dt.date | str) -> dict[str, Any]:
        """WeChat's getUserPortrait (WeChat's limits apply unless the server lifts them)."""
        body: dict[str, Any] = _json(self._send(self._session.portrait_request(begin, end)))
        return body

    def native_portrait(
        self, begin: dt.date | str, end: dt.date | str, format: Format = "json"
    ) -> dict[str, Any] | str:
        """Any window through the native API; ``format='csv'`` returns CSV text."""
        res = self._send(self._session.native_request(begin, end, format))
        if format == "csv" and res.headers.get("content-type", "").startswith("text/csv"):
            return res.text
        body: dict[str, Any] = _json(res)
        return body

    def send_events(
        self,
        events: Iterable[Mapping[str, Any]],
        *,
        batch_size: int = MAX_BATCH_RECORDS,
        max_batch_bytes: int = MAX_BATCH_BYTES,
        gzip: bool = True,
    ) -> SendSummary:
        """POST events to ``/v1/events`` in batches with the ingest key; retried safely
        (docs/clients.md).

        Raises EventsNotSent (with ``.unsent``) when a batch still fails after retries, and
        ValueError before sending anything when the client has no ``ingest_key``.
        """
        return self._send_ready(self._session.ready(events), batch_size, max_batch_bytes, gzip)

    def _send_ready(
        self, items: list[tuple[int, Ready]], batch_size: int = MAX_BATCH_RECORDS,
        max_batch_bytes: int = MAX_BATCH_BYTES, gzip: bool = True,
    ) -> SendSummary:  # fmt: skip
        plan = _events.send_plan(items, self.retry, batch_size, max_batch_bytes, gzip)
        got: httpx.Response | Exception | None = None
        try:
            while True:
                step = plan.send(got)
                if isinstance(step, _events.Sleep):
                    self._sleep(step.seconds)
                    got = None
                    continue
                try:
                    got = self._http.request(**self._session.post(step))
                except (httpx.HTTPError, ServiceError) as exc:
                    got = exc
        except StopIteration as done:
            summary: SendSummary = done.value
            return summary


class AsyncClient:
    """The same API for asyncio."""

    def __init__(
        self,
        base_url: str,
        appid: str,
        secret: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        ingest_key: str | None = None,
        timeout: float = 30.0,
        refresh_margin_s: float = 60.0,
        now: Callable[[], float] = time.time,
        retry: Retry = DEFAULT_RETRY,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._session = _Session(appid, secret, ingest_key, refresh_margin_s, now)
        self._http = httpx.AsyncClient(base_url=base_url, transport=transport, timeout=timeout)
        self.retry = retry
        self._sleep = sleep

    @property
    def appid(self) -> str:
        return self._session.appid

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def access_token(self, refresh: bool = False) -> str:
        token = None if refresh else self._session.cached()
        if token is None:
            for attempt in range(self.retry.attempts):
                res = await self._http.get(TOKEN_PATH, params=self._session.token_params())
                if not _busy(res) or attempt == self.retry.attempts - 1:
                    break
                await asyncio.sleep(_events.wait_s(self.retry, attempt, _events.retry_after(res)))
            token = self._session.store(_json(res))
        return token

    async def _send(self, request: dict[str, Any]) -> httpx.Response:
        params = request.pop("params", {})
        for attempt in (0, 1):
            token = await self.access_token(refresh=attempt == 1)
            res = await self._http.request(**request, params={**params, "access_token": token})
            if attempt == 0 and _token_rejected(res):
                continue
            return res
        raise AssertionError("unreachable")

    async def portrait(self, begin: dt.date | str, end: dt.date | str) -> dict[str, Any]:
        body: dict[str, Any] = _json(await self._send(self._session.portrait_request(begin, end)))
        return body

    async def native_portrait(
        self, begin: dt.date | str, end: dt.date | str, format: Format = "json"
    ) -> dict[str, Any] | str:
        res = await self._send(self._session.native_request(begin, end, format))
        if format == "csv" and res.headers.get("content-type", "").startswith("text/csv"):
            return res.text
        body: dict[str, Any] = _json(res)
        return body

    async def send_events(
        self,
        events: Iterable[Mapping[str, Any]],
        *,
        batch_size: int = MAX_BATCH_RECORDS,
        max_batch_bytes: int = MAX_BATCH_BYTES,
        gzip: bool = True,
    ) -> SendSummary:
        return await self._send_ready(
            self._session.ready(events), batch_size, max_batch_bytes, gzip
        )

    async def _send_ready(
        self, items: list[tuple[int, Ready]], batch_size: int = MAX_BATCH_RECORDS,
        max_batch_bytes: int = MAX_BATCH_BYTES, gzip: bool = True,
    ) -> SendSummary:  # fmt: skip
        plan = _events.send_plan(items, self.retry, batch_size, max_batch_bytes, gzip)
        got: httpx.Response | Exception | None = None
        try:
            while True:
                step = plan.send(got)
                if isinstance(step, _events.Sleep):
                    await self._sleep(step.seconds)
                    got = None
                    continue
                try:
                    got = await self._http.request(**self._session.post(step))
                except (httpx.HTTPError, ServiceError) as exc:
                    got = exc
        except StopIteration as done:
            summary: SendSummary = done.value
            return summary
