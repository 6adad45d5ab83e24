"""The datacube endpoint and its cloud-call form, in-process (ASGI)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import threading
from typing import Any

import pytest

from tests.conftest import load
from tests.fixtures import EMPTY, WINDOW_0610_0612, A
from tests.server import (
    BODY,
    CLOUD,
    PATH,
    WECHAT_JSON,
    app_client,
    asgi_client,
    assert_cloud_error,
    assert_error,
    token,
)
from userportrait.app import create_app
from userportrait.portrait.query import today_shanghai
from userportrait.settings import Settings
from userportrait.store.lake import Lake

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize(
    ("content_type", "raw"),
    [(None, json.dumps(BODY)), ("application/json", json.dumps(BODY)),
     ("application/json; charset=utf-8", json.dumps(BODY, separators=(",", ":"))),
     ("application/json;charset=utf-8", json.dumps(BODY) + "\n"),
     ("text/plain", json.dumps({"begin_date": "2024-06-10", "end_date": "2024-06-12"})),
     ("application/x-www-form-urlencoded", json.dumps(BODY))],
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
    assert res.headers["content-type"] == WECHAT_JSON
    assert res.json() == WINDOW_0610_0612
    assert "errcode" not in res.json()
    assert "广东省" in res.text  # not \\u-escaped


async def test_empty_window_has_all_six_keys(api_settings: Settings) -> None:
    async with asgi_client(api_settings.replace(ref_date_mode="begin")) as c:
        res = await c.post(
            PATH,
            params={"access_token": await token(c)},
            json={"begin_date": "20200101", "end_date": "20200107"},
        )
    assert res.json() == {"ref_date": "20200101", "visit_uv_new": EMPTY, "visit_uv": EMPTY}


async def test_cloud_call_form(api_settings: Settings) -> None:
    async with asgi_client(api_settings) as c:
        tok = {"access_token": await token(c)}
        res = await c.post(CLOUD, params=tok, json={"beginDate": "20240610", "endDate": "20240612"})
        assert res.headers["content-type"] == WECHAT_JSON
        assert res.json() == {
            "refDate": "20240610-20240612", "visitUvNew": WINDOW_0610_0612["visit_uv_new"],
            "visitUv": WINDOW_0610_0612["visit_uv"],
            "errMsg": "openapi.analysis.getUserPortrait:ok", "errCode": 0,
        }  # fmt: skip
        bad = await c.post(CLOUD, params=tok, json={"beginDate": "2024", "endDate": "20240612"})
        assert_cloud_error(bad, 61500, "date format error")
        assert_cloud_error(await c.post(CLOUD, json={}), 41001, "access_token missing")
        assert_cloud_error(await c.get(CLOUD, params=tok), 43002, "require POST method")
        # the seed: "出入参和 HTTPS 调用相同" — the snake_case body works too, same answer
        snake = await c.post(CLOUD, params=tok, json=BODY)
        assert snake.json() == res.json()


async def test_wechat_limits(api_settings: Settings) -> None:
    """Spans of 1/7/30 days ending yesterday (Asia/Shanghai) or earlier; else 61501."""
    today = today_shanghai()
    yesterday = today - dt.timedelta(days=1)

    def day(d: dt.date) -> str:
        return d.strftime("%Y%m%d")

    async with asgi_client(api_settings.replace(wechat_limits=True)) as c:
        tok = {"access_token": await token(c)}
        assert_error(await c.post(PATH, params=tok, json=BODY), 61501, "date range error")
        for span in (1, 7, 30):
            begin = yesterday - dt.timedelta(days=span - 1)
            res = await c.post(
                PATH, params=tok, json={"begin_date": day(begin), "end_date": day(yesterday)}
            )
            assert set(res.json()) == {"ref_date", "visit_uv_new", "visit_uv"}
        for begin, end in [(today, today), (yesterday - dt.timedelta(days=1), yesterday),
                           (yesterday, yesterday - dt.timedelta(days=1))]:  # fmt: skip
            res = await c.post(
                PATH, params=tok, json={"begin_date": day(begin), "end_date": day(end)}
            )
            assert_error(res, 61501, "date range error")


async def test_quotas(api_settings: Settings) -> None:
    async with asgi_client(api_settings.replace(quota_per_minute=2)) as c:
        tok = {"access_token": await token(c)}
        for _ in range(2):
            assert (await c.post(PATH, params=tok, json=BODY)).json() == WINDOW_0610_0612
        res = await c.post(PATH, params=tok, json=BODY)
        assert_error(res, 45011, "api minute-quota reach limit, must slower, retry next minute")
    async with asgi_client(api_settings.replace(quota_per_day=1)) as c:
        tok = {"access_token": await token(c)}
        assert (await c.post(PATH, params=tok, json=BODY)).status_code == 200
        assert_error(await c.post(PATH, params=tok, json=BODY), 45009, "reach max api daily quota")


async def test_cache_hits_and_new_ingest_invalidates(api_settings: Settings) -> None:
    app = create_app(api_settings)
    async with app_client(app) as c:
        tok = {"access_token": await token(c)}
        first = (await c.post(PATH, params=tok, json=BODY)).json()
        again = (await c.post(PATH, params=tok, json=BODY)).json()
        cache = app.state.portraits
        assert first == again == WINDOW_0610_0612 and (cache.hits, cache.misses) == (1, 1)
        new_user = {"appid": A, "openid": "u9", "ts": "2024-06-11T08:00:00+08:00"}
        load(Lake(api_settings), [new_user], name="more.ndjson")
        after = (await c.post(PATH, params=tok, json=BODY)).json()
        assert cache.misses == 2
        assert sum(r["value"] for r in after["visit_uv"]["genders"]) == 5  # was 4


async def test_concurrent_misses_compute_once(api_settings: Settings) -> None:
    app = create_app(api_settings)
    async with app_client(app) as c:
        tok = {"access_token": await token(c)}
        engine = app.state.portraits.engine
        runs: list[int] = []
        real = engine.run_portrait

        def counted(query: Any) -> Any:
            runs.append(threading.get_ident())
            return real(query)

        engine.run_portrait = counted
        answers = await asyncio.gather(*(c.post(PATH, params=tok, json=BODY) for _ in range(10)))
    assert all(a.json() == WINDOW_0610_0612 for a in answers)
    assert len(runs) == 1


async def test_time_limit_is_system_busy(api_settings: Settings) -> None:
    app = create_app(api_settings.replace(query_time_limit_ms=50))
    release = threading.Event()
    async with app_client(app) as c:
        tok = {"access_token": await token(c)}
        engine = app.state.portraits.engine
        real = engine.run_portrait

        def slow(query: Any) -> Any:
            release.wait(5)
            return real(query)

        engine.run_portrait = slow
        assert_error(await c.post(PATH, params=tok, json=BODY), -1, "system busy")
        release.set()


async def test_unexpected_error_is_system_error_logged_with_rid(
    api_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(api_settings)
    async with app_client(app) as c:
        tok = {"access_token": await token(c)}

        def broken(query: Any) -> Any:
            raise RuntimeError("secret internals")

        app.state.portraits.engine.run_portrait = broken
        with caplog.at_level(logging.INFO):
            res = await c.post(PATH, params=tok, json=BODY)
    rid = assert_error(res, -1, "system error")
    assert res.json()["errmsg"] == f"system error rid: {rid}"
    assert "secret internals" not in res.text and "Traceback" not in res.text
    logged = [r for r in caplog.records if r.name == "userportrait.api" and r.exc_info]
    assert len(logged) == 1 and rid in logged[0].getMessage()
    access = [json.loads(r.getMessage()) for r in caplog.records if r.name == "userportrait.access"]
    assert {"rid": rid, "method": "POST", "path": PATH, "status": 200}.items() <= access[-1].items()


async def test_unknown_route_is_404_with_the_error_shape(api_settings: Settings) -> None:
    async with asgi_client(api_settings) as c:
        res = await c.post("/datacube/getweanalysisappidvisitdistribution", json=BODY)
    assert_error(res, -1, "system error: no such API", status=404)


async def test_lagging_engine_answers_are_not_pinned(api_settings: Settings) -> None:
    """An engine reporting data_version() older than the catalog: nothing cached for it."""
    app = create_app(api_settings)
    async with app_client(app) as c:
        tok = {"access_token": await token(c)}
        app.state.portraits.engine.data_version = lambda: 0
        for _ in range(2):
            assert (await c.post(PATH, params=tok, json=BODY)).json() == WINDOW_0610_0612
        assert app.state.portraits.misses == 2
