"""The dashboard's HTTP side in-process: page, assets, sessions, links, the cookie on /v1, trend."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest

from tests.fixtures import DAY_0609, WINDOW_0610_0612, A
from tests.server import SECRET, app_client, assert_error
from userportrait.app import create_app
from userportrait.dashboard.sessions import COOKIE, SessionStore, write_admin_key
from userportrait.settings import Settings

pytestmark = pytest.mark.anyio
WINDOW = {"begin": "20240610", "end": "20240612"}
PORTRAIT = f"/v1/apps/{A}/portrait"
IC = "invalid credential, access_token is invalid or not latest: "


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def signin(c: httpx.AsyncClient, body: dict[str, str]) -> httpx.Response:
    return await c.post("/dashboard/signin", json=body)


async def test_page_assets_and_offline_docs(api_settings: Settings) -> None:
    async with app_client(create_app(api_settings)) as c:
        page = await c.get("/")
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert "<title>用户画像" in page.text
        for src in re.findall(r'(?:src|href)="(/assets/[^"]+)"', page.text):
            assert (await c.get(src)).status_code == 200, src
        geo = (await c.get("/assets/vendor/china-map/china.json")).json()
        assert len(geo["features"]) == 34
        docs = (await c.get("/docs")).text
        urls = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", docs)
        assert urls and all(u.startswith("/assets/vendor/swagger-ui/") for u in urls), urls
        assert "url: '/openapi.json'" in docs
        for u in urls:
            assert (await c.get(u)).status_code == 200, u
        assert (await c.get("/redoc")).status_code == 404  # it would load from a CDN


async def test_signin_with_secret_reads_the_native_api_by_cookie(api_settings: Settings) -> None:
    async with app_client(create_app(api_settings)) as c:
        assert_error(await c.get("/dashboard/me"), 41001, "access_token missing: not signed in")
        res = await signin(c, {"appid": A, "secret": SECRET})
        body = res.json()
        assert body == {"errcode": 0, "errmsg": "ok", "admin": False, "apps": [A],
                        "expires_at": body["expires_at"]}  # fmt: skip
        assert abs(body["expires_at"] - (time.time() + 28_800)) < 60
        cookie = res.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie
        assert "SameSite=strict" in cookie and "Path=/" in cookie and "Max-Age=28800" in cookie
        assert "Secure" not in cookie  # plain http in the test; https sets it
        assert (await c.get(PORTRAIT, params=WINDOW)).json() == WINDOW_0610_0612
        csv = await c.get(PORTRAIT, params={**WINDOW, "format": "csv"})
        assert csv.text.startswith("ref_date,audience,dimension,id,name,value")
        # A session reads its own app only.
        assert_error(
            await c.get("/v1/apps/wxb000000000000002/portrait", params=WINDOW),
            48001, "api unauthorized: the session belongs to another app",
        )  # fmt: skip
        assert (await c.post("/dashboard/signout")).json() == {"errcode": 0, "errmsg": "ok"}
        assert_error(await c.get(PORTRAIT, params=WINDOW), 41001, "access_token missing")


async def test_a_signed_out_or_stolen_session_id_is_refused(api_settings: Settings) -> None:
    async with app_client(create_app(api_settings)) as c:
        await signin(c, {"appid": A, "secret": SECRET})
        sid = c.cookies[COOKIE]
        await c.post("/dashboard/signout")
        c.cookies.set(COOKIE, sid)
        assert_error(await c.get("/dashboard/me"), 40001, IC + "the session is unknown")


async def test_session_expiry_asks_again(api_settings: Settings) -> None:
    app = create_app(api_settings)
    async with app_client(app) as c:
        await signin(c, {"appid": A, "secret": SECRET})
        assert (await c.get("/dashboard/me")).json()["errcode"] == 0
        store: SessionStore = app.state.sessions
        store.now = lambda: time.time() + store.session_ttl + 1
        assert_error(
            await c.get("/dashboard/me"), 42001, "access_token expired: the session has expired"
        )
        assert_error(await c.get(PORTRAIT, params=WINDOW), 42001, "access_token expired")


async def test_one_time_link_and_admin_key(api_settings: Settings) -> None:
    app = create_app(api_settings)
    async with app_client(app) as c:
        code = app.state.sessions.new_link_code(A)
        res = await signin(c, {"code": code})
        assert res.json()["apps"] == [A] and COOKIE in res.headers["set-cookie"]
        assert_error(
            await signin(c, {"code": code}),
            40001,
            IC + "the sign-in link is invalid, used or expired",
        )
        late = app.state.sessions.new_link_code(A)
        app.state.sessions.now = lambda: time.time() + 601
        assert_error(await signin(c, {"code": late}), 40001, IC + "the sign-in link")
        app.state.sessions.now = time.time

        assert_error(await signin(c, {"admin_key": "x" * 20}), 40001, IC + "no admin key is set")
        key = write_admin_key(api_settings.data_dir)
        assert_error(await signin(c, {"admin_key": key + "x"}), 40001, IC + "wrong admin key")
        admin = (await signin(c, {"admin_key": key})).json()
        assert admin["admin"] is True and admin["apps"] == [A]
        other = await c.get("/v1/apps/wxb000000000000002/portrait", params=WINDOW)
        assert other.json()["visit_uv"]["genders"] == [{"id": 0, "name": "未知", "value": 1}]
        # A token in the request wins over the cookie (SDKs keep their own rules).
        assert_error(
            await c.get(PORTRAIT, params={**WINDOW, "access_token": "nope"}),
            40001,
            "invalid credential",
        )


async def test_trend_is_one_day_portraits(api_settings: Settings) -> None:
    async with app_client(create_app(api_settings)) as c:
        await signin(c, {"appid": A, "secret": SECRET})
        res = await c.get(
            "/dashboard/trend", params={"appid": A, "begin": "20240609", "end": "20240612"}
        )
        days: list[dict[str, Any]] = res.json()["days"]
        assert days == [
            {"date": "20240609", "active": 1, "new": 1},
            {"date": "20240610", "active": 3, "new": 1},
            {"date": "20240611", "active": 2, "new": 1},
            {"date": "20240612", "active": 0, "new": 0},
        ]
        assert days[0]["active"] == sum(r["value"] for r in DAY_0609["visit_uv"]["genders"])
        assert_error(
            await c.get("/dashboard/trend", params={"appid": A, "begin": "20230101", "end": "20240612"}),
            61501, "date range error: the trend covers at most 366 days",
        )  # fmt: skip
