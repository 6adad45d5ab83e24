"""``POST /v1/forget``: the ingest key forgets users, their events still in the server's
write-ahead log included."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import load
from tests.fixtures import EVENTS, A
from tests.server import SECRET, asgi_client, assert_error, ingest_headers, token
from userportrait.auth.store import AuthStore
from userportrait.settings import Settings
from userportrait.store.lake import Lake

pytestmark = pytest.mark.anyio
GHOSTS = [f"ghost-openid-{i:04d}" for i in range(3)]
WEEK = {"begin": "20240606", "end": "20240612"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def prepare(settings: Settings, without: str) -> Settings:
    load(Lake(settings), [e for e in EVENTS if (e["appid"], e["openid"]) != (A, without)])
    AuthStore(settings.data_dir / "meta.sqlite").add_app(A, SECRET)
    return settings.replace(wechat_limits=False)


def traces(root: Path, needle: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


async def test_forget_flushes_the_wal_then_forgets(api_settings: Settings, tmp_path: Path) -> None:
    settings = api_settings.replace(live_flush_interval_ms=3_600_000)  # no flush on its own
    key = ingest_headers(settings)
    async with asgi_client(settings) as c:
        events = [
            {"appid": A, "openid": g, "ts": "2024-06-11T10:00:00+08:00", "province": "上海"}
            for g in GHOSTS
            for _ in range(2)
        ]
        res = await c.post("/v1/events", json=events, headers=key)
        assert res.json()["accepted"] == 6
        assert traces(settings.data_dir / "wal", GHOSTS[0])  # in the log, not the lake yet
        res = await c.post("/v1/forget", json={"openids": [*GHOSTS, "u2", "nobody"]}, headers=key)
        assert res.json() == {"errcode": 0, "errmsg": "ok", "users": 4, "events": 8}

        params = {**WEEK, "access_token": await token(c)}
        after = (await c.get(f"/v1/apps/{A}/portrait", params=params)).json()
    # The same as a store that never saw them.
    never = prepare(Settings(data_dir=tmp_path / "never", duckdb_memory_limit_mb=512), without="u2")
    async with asgi_client(never) as c:
        params = {**WEEK, "access_token": await token(c)}
        assert (await c.get(f"/v1/apps/{A}/portrait", params=params)).json() == after
    for ghost in GHOSTS:
        assert traces(settings.data_dir, ghost) == []


async def test_forget_takes_at_most_10000_openids(api_settings: Settings) -> None:
    key = ingest_headers(api_settings)
    async with asgi_client(api_settings) as c:
        many = {"openids": [f"o{i:08d}" for i in range(10_001)]}
        res = await c.post("/v1/forget", json=many, headers=key)
        assert_error(res, 47001, "data format error: at most 10000 openids per forget, got 10001")
        res = await c.post("/v1/forget", json={"openids": ["u1"], "x": 1}, headers=key)
        assert_error(res, 47001, 'data format error: the body is {"openids": ["OPENID", ...]}')
