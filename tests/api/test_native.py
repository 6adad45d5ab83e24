"""The native /v1 API and /healthz, in-process."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures import WINDOW_0610_0612, A
from tests.server import app_client, asgi_client, assert_error, token
from userportrait.app import create_app
from userportrait.portrait.export import portrait_csv
from userportrait.settings import Settings

pytestmark = pytest.mark.anyio
PORTRAIT = f"/v1/apps/{A}/portrait"
WINDOW = {"begin": "20240610", "end": "20240612"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_any_window_json_and_csv(api_settings: Settings) -> None:
    # WeChat's limits stay on for the datacube route; the native API ignores them.
    async with asgi_client(api_settings.replace(wechat_limits=True)) as c:
        t = await token(c)
        res = await c.get(PORTRAIT, params=WINDOW, headers={"Authorization": f"Bearer {t}"})
        assert res.json() == WINDOW_0610_0612
        assert res.headers["content-type"] == "application/json; encoding=utf-8"
        dashed = await c.get(PORTRAIT, params={"begin": "2024-06-10", "end": "2024-06-12",
                                               "access_token": t})  # fmt: skip
        assert dashed.json() == WINDOW_0610_0612
        csv_res = await c.get(PORTRAIT, params={**WINDOW, "format": "csv", "access_token": t})
        assert csv_res.headers["content-type"] == "text/csv; charset=utf-8"
        assert csv_res.text == portrait_csv(WINDOW_0610_0612)
        assert "20240610-20240612,visit_uv,city,4403,深圳,1" in csv_res.text


async def test_token_of_another_app_is_48001(api_settings: Settings) -> None:
    async with asgi_client(api_settings) as c:
        t = await token(c)
        res = await c.get("/v1/apps/wxother/portrait", params={**WINDOW, "access_token": t})
        assert_error(res, 48001, "api unauthorized: the access_token belongs to another app")


async def test_healthz(api_settings: Settings) -> None:
    app = create_app(api_settings)
    async with app_client(app) as c:
        body = (await c.get("/healthz")).json()
        assert body["status"] == "ok" and body["store_version"] >= 1 and body["version"]

        def broken() -> Any:
            raise OSError("disk gone")

        app.state.lake.catalog.version = broken
        res = await c.get("/healthz")
        assert res.status_code == 503 and res.json()["status"] == "error"


async def test_openapi_documents_the_native_api(api_settings: Settings) -> None:
    async with asgi_client(api_settings) as c:
        spec = (await c.get("/openapi.json")).json()
        assert (await c.get("/docs")).status_code == 200
    get = spec["paths"]["/v1/apps/{appid}/portrait"]["get"]
    assert {p["name"] for p in get["parameters"]} >= {"appid", "begin", "end", "format"}
    assert "text/csv" in get["responses"]["200"]["content"]
    schemas = set(spec["components"]["schemas"])
    assert {"PortraitBody", "Audience", "Item", "ErrorBody", "Health"} <= schemas
    assert "/datacube/getweanalysisappiduserportrait" in spec["paths"]
    assert "/healthz" in spec["paths"]
