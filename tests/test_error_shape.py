"""Every route, bad input: the exact WeChat error shape (datasette's test_error_shape idea).

HTTP 200, ``Content-Type: application/json; encoding=utf-8``, exactly ``errcode`` and
``errmsg``, errmsg = text + `` rid: `` + three 8-hex groups (the first the Unix time), the
same rid in ``X-Request-Id``. The cloud-call route answers ``errCode`` / ``errMsg`` instead.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.fixtures import A
from tests.server import (
    BODY,
    CLOUD,
    PATH,
    SECRET,
    app_client,
    assert_cloud_error,
    assert_error,
    ingest_headers,
    token,
)
from userportrait.app import create_app
from userportrait.settings import Settings

JSON_TYPE = {"content-type": "application/json"}

GRANT = "client_credential"
STABLE = "/cgi-bin/stable_token"
NATIVE = f"/v1/apps/{A}/portrait"
WINDOW = {"begin": "20240610", "end": "20240612"}
COMP = "/cgi-bin/component"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_every_route_error_shape(api_settings: Settings) -> None:
    app = create_app(api_settings)
    async with app_client(app) as c:
        tok = {"access_token": await token(c)}
        bearer_token = {"Authorization": f"Bearer {tok['access_token']}"}
        key = ingest_headers(api_settings)  # writes take the ingest key (issue 24)
        cases: list[tuple[str, str, dict[str, Any], int, str]] = [
            ("GET", "/cgi-bin/token", {"params": {"appid": A, "secret": SECRET}}, 40002, "invalid grant_type"),
            ("GET", "/cgi-bin/token", {"params": {"grant_type": "x", "appid": A, "secret": SECRET}}, 40002, "invalid grant_type"),
            ("GET", "/cgi-bin/token", {"params": {"grant_type": GRANT, "secret": SECRET}}, 41002, "appid missing"),
            ("GET", "/cgi-bin/token", {"params": {"grant_type": GRANT, "appid": A}}, 41004, "appsecret missing"),
            ("GET", "/cgi-bin/token", {"params": {"grant_type": GRANT, "appid": "wxnobody", "secret": SECRET}}, 40013, "invalid appid"),
            ("GET", "/cgi-bin/token", {"params": {"grant_type": GRANT, "appid": A, "secret": "wrong"}}, 40125, "invalid appsecret"),
            ("POST", "/cgi-bin/token", {}, 43001, "require GET method"),
            ("GET", STABLE, {}, 43002, "require POST method"),
            ("POST", STABLE, {"content": b""}, 44002, "empty post data"),
            ("POST", STABLE, {"content": b"{"}, 47001, "data format error: body is not valid JSON"),
            ("POST", STABLE, {"content": b"[1]"}, 47001, "data format error: body must be a JSON object"),
            ("POST", STABLE, {"json": {"appid": A, "secret": SECRET}}, 40002, "invalid grant_type"),
            ("POST", STABLE, {"json": {"grant_type": GRANT, "secret": SECRET}}, 41002, "appid missing"),
            ("POST", STABLE, {"json": {"grant_type": GRANT, "appid": A}}, 41004, "appsecret missing"),
            ("POST", STABLE, {"json": {"grant_type": GRANT, "appid": 7, "secret": SECRET}}, 47001, "data format error"),
            ("POST", STABLE, {"json": {"grant_type": GRANT, "appid": A, "secret": SECRET, "force_refresh": "yes"}}, 47001, "data format error"),
            ("POST", STABLE, {"json": {"grant_type": GRANT, "appid": "wxnobody", "secret": SECRET}}, 40013, "invalid appid"),
            ("POST", STABLE, {"json": {"grant_type": GRANT, "appid": A, "secret": "wrong"}}, 40125, "invalid appsecret"),
            ("POST", PATH, {"json": BODY}, 41001, "access_token missing"),
            ("POST", PATH, {"params": {"access_token": "x" * 40}, "json": BODY}, 40001, "invalid credential, access_token is invalid or not latest"),
            ("GET", PATH, {"params": tok}, 43002, "require POST method"),
            ("POST", PATH, {"params": tok, "content": b""}, 44002, "empty post data"),
            ("POST", PATH, {"params": tok, "content": b" \n"}, 44002, "empty post data"),
            ("POST", PATH, {"params": tok, "content": b"{nope"}, 47001, "data format error"),
            ("POST", PATH, {"params": tok, "content": b"\xff\xfe"}, 47001, "data format error"),
            ("POST", PATH, {"params": tok, "json": ["20240610"]}, 47001, "data format error"),
            ("POST", PATH, {"params": tok, "json": {"begin_date": "20240610"}}, 47001, "data format error: end_date is missing"),
            ("POST", PATH, {"params": tok, "json": {"begin_date": 20240610, "end_date": "20240612"}}, 47001, "data format error"),
            ("POST", PATH, {"params": tok, "json": {"begin_date": "2024-13-01", "end_date": "20240612"}}, 61500, "date format error"),
            ("POST", PATH, {"params": tok, "json": {"begin_date": "2024/06/10", "end_date": "20240612"}}, 61500, "date format error"),
            ("POST", PATH, {"params": tok, "json": {"begin_date": "20240612", "end_date": "20240610"}}, 61501, "date range error"),
            ("GET", NATIVE, {"params": {**WINDOW}}, 41001, "access_token missing"),
            ("GET", NATIVE, {"params": WINDOW, "headers": {"Authorization": "Bearer nope"}}, 40001, "invalid credential"),
            ("GET", NATIVE, {"params": {"begin": "x", "end": "20240612", **tok}}, 61500, "date format error"),
            ("GET", NATIVE, {"params": {"begin": "20240612", "end": "20240610", **tok}}, 61501, "date range error"),
            ("GET", NATIVE, {"params": {"end": "20240612", **tok}}, 47001, "data format error: begin: Field required"),
            ("GET", NATIVE, {"params": {**WINDOW, "format": "xml", **tok}}, 47001, "data format error: format:"),
            ("GET", "/v1/apps/wxother/portrait", {"params": {**WINDOW, **tok}}, 48001, "api unauthorized"),
            ("POST", NATIVE, {"params": {**WINDOW, **tok}}, 43001, "require GET method"),
            ("POST", "/v1/events", {"content": b"{}"}, 41001, "access_token missing: send the app's ingest key"),
            ("POST", "/v1/events", {"content": b"{}", "params": tok}, 48001, "api unauthorized: writes need the app's ingest key"),
            ("POST", "/v1/events", {"content": b"{}", "headers": bearer_token}, 48001, "api unauthorized: writes need the app's ingest key"),
            ("POST", "/v1/events", {"content": b"{}", "headers": {"Authorization": "Bearer nope"}}, 40001, "invalid credential, access_token is invalid or not latest: not a live ingest key"),
            ("POST", "/v1/events", {"content": b"", "headers": key}, 44002, "empty post data"),
            ("POST", "/v1/events", {"content": b"[1,", "headers": key}, 47001, "data format error"),
            ("GET", "/v1/events", {"headers": key}, 43002, "require POST method"),
            ("POST", "/v1/profiles", {"content": b"{}"}, 41001, "access_token missing: send the app's ingest key"),
            ("POST", "/v1/profiles", {"content": b"{}", "params": tok}, 48001, "api unauthorized: writes need the app's ingest key"),
            ("POST", "/v1/profiles", {"content": b"", "headers": key}, 44002, "empty post data"),
            ("POST", "/v1/profiles", {"content": b"[1,", "headers": key}, 47001, "data format error"),
            ("GET", "/v1/profiles", {"headers": key}, 43002, "require POST method"),
            ("POST", "/v1/forget", {"json": {"openids": ["o1"]}}, 41001, "access_token missing: send the app's ingest key"),
            ("POST", "/v1/forget", {"json": {"openids": ["o1"]}, "params": tok}, 48001, "api unauthorized: writes need the app's ingest key"),
            ("POST", "/v1/forget", {"content": b"", "headers": key}, 44002, "empty post data"),
            ("POST", "/v1/forget", {"json": ["o1"], "headers": key}, 47001, "data format error: body must be a JSON object"),
            ("POST", "/v1/forget", {"json": {"openids": "o1"}, "headers": key}, 47001, 'data format error: the body is {"openids": ["OPENID", ...]}'),
            ("POST", "/v1/forget", {"json": {"openids": []}, "headers": key}, 47001, "data format error: openids must be a non-empty list"),
            ("GET", "/v1/forget", {"headers": key}, 43002, "require POST method"),
            ("POST", "/healthz", {}, 43001, "require GET method"),
            ("POST", f"{COMP}/api_component_token", {"content": b""}, 44002, "empty post data"),
            ("POST", f"{COMP}/api_component_token", {"json": {"component_appid": "wxnobody", "component_appsecret": SECRET}}, 40013, "invalid appid"),
            ("POST", f"{COMP}/api_create_preauthcode", {"json": {"component_appid": "wxc"}}, 41001, "access_token missing: component_access_token missing"),
            ("POST", f"{COMP}/api_query_auth", {"params": {"component_access_token": "x"}, "json": {}}, 40001, "invalid credential"),
            ("GET", f"{COMP}/api_authorizer_token", {}, 43002, "require POST method"),
            ("POST", f"{COMP}/api_get_authorizer_info", {"params": {"component_access_token": "x"}, "json": {}}, 40001, "invalid credential"),
            ("POST", "/dashboard/signin", {"content": b"", "headers": JSON_TYPE}, 44002, "empty post data"),
            ("POST", "/dashboard/signin", {"content": b"{", "headers": JSON_TYPE}, 47001, "data format error: body is not valid JSON"),
            ("POST", "/dashboard/signin", {"content": b"{}"}, 48001, "api unauthorized: this route takes Content-Type: application/json"),
            ("POST", "/dashboard/signin", {"json": {"appid": 7}}, 47001, "data format error: body must be a JSON object of strings"),
            ("POST", "/dashboard/signin", {"json": {"appid": A}}, 41004, "appsecret missing"),
            ("POST", "/dashboard/signin", {"json": {"appid": A, "secret": "wrong"}}, 40125, "invalid appsecret"),
            ("POST", "/dashboard/signin", {"json": {"code": "used-or-made-up"}}, 40001, "invalid credential"),
            ("GET", "/dashboard/signin", {}, 43002, "require POST method"),
            ("GET", "/dashboard/signout", {}, 43002, "require POST method"),
            ("GET", "/dashboard/me", {}, 41001, "access_token missing: not signed in"),
            ("GET", "/dashboard/trend", {"params": {"appid": A, **WINDOW}}, 41001, "access_token missing: not signed in"),
            ("GET", "/dashboard/trend", {"params": WINDOW}, 47001, "data format error: appid: Field required"),
        ]  # fmt: skip
        seen: set[str] = set()
        for method, path, kwargs, errcode, text in cases:
            res = await c.request(method, path, **kwargs)
            assert_error(res, errcode, text)
            seen.add(path)
        cloud_cases: list[tuple[str, dict[str, Any], int, str]] = [
            ("GET", {"params": tok}, 43002, "require POST method"),
            ("POST", {"json": {"beginDate": "20240610", "endDate": "20240612"}}, 41001, "access_token missing"),
            ("POST", {"params": tok, "content": b""}, 44002, "empty post data"),
            ("POST", {"params": tok, "json": {"endDate": "20240612"}}, 47001, "data format error: beginDate is missing"),
            ("POST", {"params": tok, "json": {"beginDate": "2024", "endDate": "20240612"}}, 61500, "date format error"),
            ("POST", {"params": tok, "json": {"beginDate": "20240612", "endDate": "20240610"}}, 61501, "date range error"),
        ]  # fmt: skip
        for method, kwargs, errcode, text in cloud_cases:
            assert_cloud_error(await c.request(method, CLOUD, **kwargs), errcode, text)
        seen.add(CLOUD)
    # Every route of the API (the OpenAPI schema: app.routes nests included routers in
    # FastAPI >= 0.16x) has a bad-input case above.
    routes = set(app.openapi()["paths"])
    assert len(routes) > 10
    patterns = {r: re.compile(re.sub(r"\{[^}]+\}", "[^/]+", r) + "$") for r in routes}
    missing = {r for r, p in patterns.items() if not any(p.match(s) for s in seen)}
    assert missing == set(), "a route has no bad-input case here"
