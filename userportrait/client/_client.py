"""``Client`` / ``AsyncClient``: tokens fetched and cached, both portrait APIs, typed errors."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import httpx

from userportrait.client._exceptions import TransportError, raise_for_body
from userportrait.errors import AccessTokenExpired, InvalidCredential

REFRESH_MARGIN_S = 60
PORTRAIT_PATH = "/datacube/getweanalysisappiduserportrait"


def _day(value: dt.date | str) -> str:
    return value.strftime("%Y%m%d") if isinstance(value, dt.date) else value


def _json(res: httpx.Response) -> Any:
    try:
        body = res.json()
    except ValueError:
        raise TransportError(f"HTTP {res.status_code}: not JSON") from None
    raise_for_body(body)
    if res.status_code >= 400:
        raise TransportError(f"HTTP {res.status_code}")
    return body


class _Tokens:
    def __init__(self) -> None:
        self.token: str | None = None
        self.expires_at = 0.0

    def valid(self) -> bool:
        return self.token is not None and time.time() < self.expires_at - REFRESH_MARGIN_S

    def set(self, body: dict[str, Any]) -> str:
        self.token = str(body["access_token"])
        self.expires_at = time.time() + int(body.get("expires_in", 7200))
        return self.token


class Client:
    """Synchronous client. ``transport`` lets tests use ``httpx.MockTransport``."""

    def __init__(
        self, base_url: str, appid: str, secret: str, *,
        transport: httpx.BaseTransport | None = None, timeout: float = 30.0,
    ) -> None:  # fmt: skip
        self.appid, self.secret = appid, secret
        self._http = httpx.Client(base_url=base_url, transport=transport, timeout=timeout)
        self._tokens = _Tokens()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def access_token(self, refresh: bool = False) -> str:
        if refresh or not self._tokens.valid():
            params = {"grant_type": "client_credential", "appid": self.appid, "secret": self.secret}
            return self._tokens.set(_json(self._http.get("/cgi-bin/token", params=params)))
        assert self._tokens.token is not None
        return self._tokens.token

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for attempt in (0, 1):
            params = {**kwargs.pop("params", {}), "access_token": self.access_token(attempt == 1)}
            res = self._http.request(method, path, params=params, **kwargs)
            try:
                _json(res) if res.headers.get("content-type", "").startswith(
                    "application/json"
                ) else None
            except (InvalidCredential, AccessTokenExpired):
                if attempt == 0:
                    kwargs["params"] = {k: v for k, v in params.items() if k != "access_token"}
                    continue
                raise
            return res
        raise AssertionError("unreachable")

    def portrait(self, begin: dt.date | str, end: dt.date | str) -> dict[str, Any]:
        """WeChat's getUserPortrait (WeChat's limits apply unless the server lifts them)."""
        res = self._call(
            "POST", PORTRAIT_PATH, json={"begin_date": _day(begin), "end_date": _day(end)}
        )
        body: dict[str, Any] = _json(res)
        return body

    def native_portrait(
        self, begin: dt.date | str, end: dt.date | str, format: str = "json"
    ) -> dict[str, Any] | str:
        """Any window through the native API; ``format='csv'`` returns CSV text."""
        res = self._call(
            "GET", f"/v1/apps/{self.appid}/portrait",
            params={"begin": _day(begin), "end": _day(end), "format": format},
        )  # fmt: skip
        if format == "csv":
            return res.text
        body: dict[str, Any] = _json(res)
        return body


class AsyncClient:
    """The same API for asyncio."""

    def __init__(
        self, base_url: str, appid: str, secret: str, *,
        transport: httpx.AsyncBaseTransport | None = None, timeout: float = 30.0,
    ) -> None:  # fmt: skip
        self.appid, self.secret = appid, secret
        self._http = httpx.AsyncClient(base_url=base_url, transport=transport, timeout=timeout)
        self._tokens = _Tokens()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def access_token(self, refresh: bool = False) -> str:
        if refresh or not self._tokens.valid():
            params = {"grant_type": "client_credential", "appid": self.appid, "secret": self.secret}
            return self._tokens.set(_json(await self._http.get("/cgi-bin/token", params=params)))
        assert self._tokens.token is not None
        return self._tokens.token

    async def portrait(self, begin: dt.date | str, end: dt.date | str) -> dict[str, Any]:
        for attempt in (0, 1):
            token = await self.access_token(attempt == 1)
            res = await self._http.post(
                PORTRAIT_PATH, params={"access_token": token},
                json={"begin_date": _day(begin), "end_date": _day(end)},
            )  # fmt: skip
            try:
                body: dict[str, Any] = _json(res)
            except (InvalidCredential, AccessTokenExpired):
                if attempt == 0:
                    continue
                raise
            return body
        raise AssertionError("unreachable")
