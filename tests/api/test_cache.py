"""``PortraitCache``: the one way the server's routes get a portrait (``run(query)``)."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.conftest import load
from tests.fixtures import EVENTS, WINDOW_0610_0612, A
from userportrait.api.cache import PortraitCache
from userportrait.engine import get_engine
from userportrait.errors import QueryTimeout
from userportrait.portrait.query import PortraitQuery
from userportrait.store.lake import Lake

pytestmark = pytest.mark.anyio

Q = PortraitQuery(A, dt.date(2024, 6, 10), dt.date(2024, 6, 12))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_run_answers_then_hits_under_the_catalog_version(lake: Lake) -> None:
    load(lake, EVENTS)
    cache = PortraitCache(
        lake, get_engine("reference", lake), size=4, mode="range", time_limit_ms=30_000
    )
    assert await cache.run(Q) == await cache.run(Q) == WINDOW_0610_0612
    assert (cache.hits, cache.misses) == (1, 1)
    # The reference engine reads the catalog afresh (data_version() is None): the answer
    # is filed under the version read before asking.
    version = lake.catalog.version()
    assert list(cache._items) == [(Q, "range", version)]


async def test_run_takes_the_mode_and_time_limit_it_was_built_with(lake: Lake) -> None:
    load(lake, EVENTS)
    engine = get_engine("sql", lake)
    begin = PortraitCache(lake, engine, size=4, mode="begin", time_limit_ms=30_000)
    assert (await begin.run(Q))["ref_date"] == "20240610"
    # 0 ms: the limit passes before any answer can.
    with pytest.raises(QueryTimeout):
        await PortraitCache(lake, engine, size=4, mode="range", time_limit_ms=0).run(Q)
