"""The WeChat-compatible API and the native API, in-process and on a real server."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import load
from tests.fixtures import WINDOW_0610_0612, A
from tests.server import asgi_client, live_server
from userportrait.auth.store import AuthStore
from userportrait.client import Client, InvalidCredential, InvalidDate, InvalidDateRange
from userportrait.errors import AccessTokenExpired
from userportrait.settings import Settings
from userportrait.store.lake import Lake

SECRET = "s3cret-s3cret"
RID = r" rid: [0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}$"
PATH = "/datacube/getweanalysisappiduserportrait"
BODY = {"begin_date": "20240610", "end_date": "20240612"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    from tests.fixtures import EVENTS

    load(Lake(settings), EVENTS)
    AuthStore(settings.data_dir / "meta.sqlite").add_app(A, SECRET)
    return settings.replace(wechat_limits=False)


async def token(c: httpx.AsyncClient) -> str:
    res = await c.get(
        "/cgi-bin/token", params={"grant_type": "client_credential", "appid": A, "secret": SECRET}
    )
    body = res.json()
    assert body["expires_in"] == 7200 and len(body["access_token"]) >= 64
    return str(body["access_token"])


def assert_error(res: httpx.Response, errcode: int, text: str, status: int = 200) -> None:
    assert res.status_code == status
    assert res.headers["content-type"] == "application/json; encoding=utf-8"
    body = res.json()
    assert set(body) == {"errcode", "errmsg"}
    assert body["errcode"] == errcode
    assert body["errmsg"].startswith(text), body
    assert re.search(RID, body["errmsg"]), body


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("content_type", "raw"),
    [(None, json.dumps(BODY)), ("application/json", json.dumps(BODY)),
     ("application/json; charset=utf-8", json.dumps(BODY, separators=(",", ":"))),
     ("application/json;charset=utf-8", json.dumps(BODY) + "\n"),
     ("text/plain", json.dumps({"begin_date": "2024-06-10", "end_date": "2024-06-12"}))],
)  # fmt: skip
async def test_datacube_exact_json_any_content_type(
    api_settings: Settings, content_type: str | None, raw: str
) -> None:
    async with asgi_client(api_settings) as c:
        headers = {"content-type": content_type} if content_type else {}
        res = await c.post(
            PATH, params={"access_token": await token(c)}, content=raw, headers=headers
        )
    assert res.status_code == 200
    assert res.headers["content-type"] == "application/json; encoding=utf-8"
    assert res.json() == WINDOW_0610_0612
    assert "广东省" in res.text  # not \\u-escaped


@pytest.mark.anyio
async def test_cloud_form_and_native_api(api_settings: Settings) -> None:
    async with asgi_client(api_settings) as c:
        t = await token(c)
        cloud = (await c.post("/wxa/cloud/analysis.getUserPortrait", params={"access_token": t},
                              json={"beginDate": "20240610", "endDate": "20240612"})).json()  # fmt: skip
        assert cloud == {
            "refDate": "20240610-20240612", "visitUvNew": WINDOW_0610_0612["visit_uv_new"],
            "visitUv": WINDOW_0610_0612["visit_uv"],
            "errMsg": "openapi.analysis.getUserPortrait:ok", "errCode": 0,
        }  # fmt: skip
        bad = (await c.post("/wxa/cloud/analysis.getUserPortrait", params={"access_token": t},
                            json={"beginDate": "2024", "endDate": "20240612"})).json()  # fmt: skip
        assert bad["errCode"] == 61500
        assert bad["errMsg"].startswith("openapi.analysis.getUserPortrait:fail date format error")
        native = await c.get(f"/v1/apps/{A}/portrait", params={"begin": "20240610", "end": "20240612"},
                             headers={"Authorization": f"Bearer {t}"})  # fmt: skip
        assert native.json() == WINDOW_0610_0612
        csv_res = await c.get(f"/v1/apps/{A}/portrait",
                              params={"begin": "20240610", "end": "20240612", "format": "csv", "access_token": t})  # fmt: skip
        assert csv_res.headers["content-type"].startswith("text/csv")
        assert "20240610-20240612,visit_uv,city,4403,深圳,1" in csv_res.text
        other = await c.get(
            "/v1/apps/wxother/portrait",
            params={"begin": "20240610", "end": "20240612", "access_token": t},
        )
        assert_error(other, 48001, "api unauthorized")
        assert (await c.get("/healthz")).json()["status"] == "ok"
        assert "/v1/apps/{appid}/portrait" in (await c.get("/openapi.json")).json()["paths"]


@pytest.mark.anyio
async def test_every_route_error_shape(api_settings: Settings) -> None:
    async with asgi_client(api_settings) as c:
        t = await token(c)
        tok = {"access_token": t}
        cases: list[tuple[Any, int, str]] = [
            (c.get("/cgi-bin/token", params={"grant_type": "x", "appid": A, "secret": SECRET}), 40002, "invalid grant_type"),
            (c.get("/cgi-bin/token", params={"grant_type": "client_credential", "appid": "nope", "secret": SECRET}), 40013, "invalid appid"),
            (c.get("/cgi-bin/token", params={"grant_type": "client_credential", "appid": A, "secret": "wrong"}), 40125, "invalid appsecret"),
            (c.get("/cgi-bin/token", params={"grant_type": "client_credential", "appid": A}), 47001, "data format error: secret missing"),
            (c.post("/cgi-bin/stable_token", content=b""), 44002, "empty post data"),
            (c.post("/cgi-bin/stable_token", content=b"{"), 47001, "data format error"),
            (c.post("/cgi-bin/stable_token", json={"grant_type": "client_credential", "appid": A, "secret": SECRET, "force_refresh": "yes"}), 47001, "data format error"),
            (c.get("/cgi-bin/stable_token"), 43002, "require POST method"),
            (c.post(PATH, json=BODY), 41001, "access_token missing"),
            (c.post(PATH, params={"access_token": "x" * 40}, json=BODY), 40001, "invalid credential"),
            (c.get(PATH, params=tok), 43002, "require POST method"),
            (c.post(PATH, params=tok, content=b""), 44002, "empty post data"),
            (c.post(PATH, params=tok, content=b"{nope"), 47001, "data format error"),
            (c.post(PATH, params=tok, json={"begin_date": 20240610, "end_date": "20240612"}), 47001, "data format error"),
            (c.post(PATH, params=tok, json={"begin_date": "2024-13-01", "end_date": "20240612"}), 61500, "date format error"),
            (c.post(PATH, params=tok, json={"begin_date": "20240612", "end_date": "20240610"}), 61501, "date range error"),
            (c.get(f"/v1/apps/{A}/portrait", params={"begin": "x", "end": "20240612", **tok}), 61500, "date format error"),
            (c.get(f"/v1/apps/{A}/portrait", params={"begin": "20240610", "end": "20240612"}), 41001, "access_token missing"),
            (c.get(f"/v1/apps/{A}/portrait", params={"begin": "20240610", "end": "20240612", "format": "xml", **tok}), 47001, "data format error"),
            (c.post("/v1/events", content=b"", params=tok), 44002, "empty post data"),
        ]  # fmt: skip
        for request, errcode, text in cases:
            assert_error(await request, errcode, text)


@pytest.mark.anyio
async def test_wechat_limits_and_quota(api_settings: Settings) -> None:
    limited = api_settings.replace(wechat_limits=True, quota_per_minute=2)
    async with asgi_client(limited) as c:
        tok = {"access_token": await token(c)}
        assert_error(
            await c.post(PATH, params=tok, json=BODY), 61501, "date range error: span is 3 days"
        )
        today = dt.datetime.now(dt.UTC).astimezone(dt.timezone(dt.timedelta(hours=8))).date()
        y = (today - dt.timedelta(days=1)).strftime("%Y%m%d")
        assert (
            "visit_uv"
            in (await c.post(PATH, params=tok, json={"begin_date": y, "end_date": y})).json()
        )
        t = today.strftime("%Y%m%d")
        assert_error(
            await c.post(PATH, params=tok, json={"begin_date": t, "end_date": t}),
            45011,
            "api minute-quota",
        )


def test_token_rules_with_a_clock(tmp_path: Path) -> None:
    now = [1_000_000.0]
    store = AuthStore(tmp_path / "meta.sqlite", now=lambda: now[0])
    store.add_app(A, SECRET)
    first = store.issue_token(A, SECRET).token
    second = store.issue_token(A, SECRET).token
    assert store.appid_for(first) == A and store.appid_for(second) == A  # 5-minute overlap
    now[0] += 301
    with pytest.raises(InvalidCredential):
        store.appid_for(first)
    assert store.appid_for(second) == A
    now[0] += 7200
    with pytest.raises(AccessTokenExpired):
        store.appid_for(second)
    # stable_token: same token while valid, countdown, force_refresh limits
    s1 = store.stable_token(A, SECRET, False)
    now[0] += 100
    s2 = store.stable_token(A, SECRET, False)
    assert s2.token == s1.token and s2.expires_in == 7100
    s3 = store.stable_token(A, SECRET, True)
    assert s3.token != s1.token
    with pytest.raises(InvalidCredential):
        store.appid_for(s1.token)
    now[0] += 10
    assert store.stable_token(A, SECRET, True).token == s3.token  # < 30 s: not refreshed
    now[0] += 7200 - 300
    assert store.stable_token(A, SECRET, False).token != s3.token  # renewed 5 min early
    # tokens survive a restart (a new store on the same file)
    assert (
        AuthStore(tmp_path / "meta.sqlite", now=lambda: now[0]).appid_for(
            store.issue_token(A, SECRET).token
        )
        == A
    )
    store.set_secret(A, "another-secret")
    with pytest.raises(InvalidCredential):
        store.appid_for(s3.token)


class _Server:
    def __init__(self, url: str, settings: Settings) -> None:
        self.url, self.settings = url, settings


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Server]:
    from tests.fixtures import EVENTS

    settings = Settings(data_dir=tmp_path_factory.mktemp("srv") / "data", wechat_limits=False,
                        duckdb_memory_limit_mb=512)  # fmt: skip
    load(Lake(settings), EVENTS)
    AuthStore(settings.data_dir / "meta.sqlite").add_app(A, SECRET)
    with live_server(settings) as url:
        yield _Server(url, settings)


def test_wechatpy_against_real_server(server: _Server) -> None:
    from wechatpy.client import WeChatClient
    from wechatpy.exceptions import WeChatClientException

    class Pointed(WeChatClient):  # type: ignore[misc]
        API_BASE_URL = server.url + "/cgi-bin/"

        def fetch_access_token(self) -> Any:
            return self._fetch_access_token(
                url=server.url + "/cgi-bin/token",
                params={
                    "grant_type": "client_credential",
                    "appid": self.appid,
                    "secret": self.secret,
                },
            )

    client = Pointed(A, SECRET)
    body = client.post(PATH.lstrip("/"), data=BODY, api_base_url=server.url + "/")
    cli_json = subprocess.run(
        [sys.executable, "-m", "userportrait", "portrait", "--appid", A, "--begin", "20240610",
         "--end", "20240612", "--data-dir", str(server.settings.data_dir)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert body == json.loads(cli_json) == WINDOW_0610_0612
    for data, errcode in [({"begin_date": "2024061", "end_date": "20240612"}, 61500),
                          ({"begin_date": "20240612", "end_date": "20240611"}, 61501)]:  # fmt: skip
        with pytest.raises(WeChatClientException) as info:
            client.post(PATH.lstrip("/"), data=data, api_base_url=server.url + "/")
        assert info.value.errcode == errcode
    bad = Pointed(A, SECRET, access_token="not-a-token", auto_retry=False)
    with pytest.raises(WeChatClientException) as info:
        bad.post(PATH.lstrip("/"), data=BODY, api_base_url=server.url + "/")
    assert info.value.errcode == 40001


def test_python_client_and_50_parallel_clients(server: _Server) -> None:
    with Client(server.url, A, SECRET) as client:
        assert client.portrait("20240610", dt.date(2024, 6, 12)) == WINDOW_0610_0612
        assert client.native_portrait("20240610", "20240612") == WINDOW_0610_0612
        assert "深圳" in str(client.native_portrait("20240610", "20240612", format="csv"))
        with pytest.raises(InvalidDate):
            client.portrait("2024", "20240612")
        with pytest.raises(InvalidDateRange):
            client.portrait("20240612", "20240610")

    def one(_: int) -> dict[str, Any]:
        with Client(server.url, A, SECRET) as c:
            return c.portrait("20240610", "20240612")

    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(one, range(50)))
    assert all(a == WINDOW_0610_0612 for a in answers)


def test_client_imports_nothing_heavy() -> None:
    code = ("import sys, userportrait.client; "
            "bad = [m for m in ('duckdb', 'fastapi', 'pyarrow', 'userportrait.engine') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True)


def test_client_with_mock_transport() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/cgi-bin/token":
            return httpx.Response(200, json={"access_token": "t" * 64, "expires_in": 7200})
        return httpx.Response(200, json={"errcode": 61501, "errmsg": "date range error rid: x"})

    with Client("http://x", A, SECRET, transport=httpx.MockTransport(handler)) as c:
        with pytest.raises(InvalidDateRange):
            c.portrait("20240610", "20240612")
