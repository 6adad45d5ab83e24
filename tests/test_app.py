"""``create_app``'s lifespan: the retention task (``USERPORTRAIT_RETENTION_DAYS``)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable

import pytest

from tests.fixtures import WINDOW_0610_0612, A
from tests.server import BODY, PATH, asgi_client, assert_error, prepare, token
from userportrait.settings import Settings
from userportrait.store import expire as expire_mod
from userportrait.store.lake import Lake

TODAY = dt.date(2024, 6, 20)
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


REFUSED = "date range error: begin_date 20240609 is before the first kept day 20240610"


async def until(check: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_serve_applies_the_retention_at_start_and_then_every_interval(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings = prepare(settings).replace(retention_days=(TODAY - dt.date(2024, 6, 10)).days)
    lake = Lake(settings)
    today = [TODAY]
    monkeypatch.setattr(expire_mod, "shanghai_today", lambda: today[0])
    monkeypatch.setattr(expire_mod, "RETENTION_INTERVAL_S", 0.05)
    caplog.set_level(logging.INFO, "userportrait.expire")

    def first_kept() -> str | None:
        kept = lake.catalog.retention_of(A)
        return kept.first_kept if kept else None

    async with asgi_client(settings) as c:
        await until(lambda: first_kept() == "2024-06-10")  # at start
        assert (
            "retention: events older than 10 days are deleted (first kept day 20240610), "
            "now and every 1.38889e-05 hours" in caplog.text
        )
        assert min(f.day for f in lake.catalog.files(A)) == "2024-06-10"
        t = await token(c)
        res = await c.post(PATH, params={"access_token": t}, json=BODY)
        assert res.json() == WINDOW_0610_0612  # u1 and u3 stay old
        res = await c.post(
            PATH,
            params={"access_token": t},
            json={"begin_date": "20240609", "end_date": "20240612"},
        )
        assert_error(res, 61501, REFUSED)
        res = await c.get(
            f"/v1/apps/{A}/portrait",
            params={"begin": "20240609", "end": "20240612", "access_token": t},
        )
        assert_error(res, 61501, REFUSED)

        today[0] += dt.timedelta(days=1)  # a day later the next round cuts a day later
        await until(lambda: first_kept() == "2024-06-11")
    assert f"expired 1 files (4 events) of {A} before 2024-06-11; 3 users' first days kept" in (
        caplog.text
    )


async def test_no_retention_by_default(settings: Settings) -> None:
    settings = prepare(settings)
    async with asgi_client(settings):
        await asyncio.sleep(0.1)
    assert Lake(settings).catalog.retention() == {}
