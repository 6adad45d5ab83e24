"""Live ingestion over HTTP: acknowledgement, visibility, limits, crash safety."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tests.ingest.test_records import depth
from tests.server import asgi_client, ingest_headers
from userportrait.auth.store import AuthStore
from userportrait.portrait.rules import MAX_DEPTH
from userportrait.settings import Settings
from userportrait.store.expire import expire
from userportrait.store.lake import Lake

A = "wxlive0000000001"
SECRET = "live-secret-1"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def live_settings(settings: Settings) -> Settings:
    AuthStore(settings.data_dir / "meta.sqlite").add_app(A, SECRET)
    AuthStore(settings.data_dir / "meta.sqlite").add_app("wxother", SECRET)
    return settings.replace(wechat_limits=False, live_flush_interval_ms=100)


def ev(i: int, **extra: Any) -> dict[str, Any]:
    return {"appid": A, "openid": f"u{i}", "ts": "2024-06-10T10:00:00+08:00", **extra}


async def tok(c: httpx.AsyncClient, appid: str = A) -> dict[str, str]:
    res = await c.get(
        "/cgi-bin/token",
        params={"grant_type": "client_credential", "appid": appid, "secret": SECRET},
    )
    return {"access_token": res.json()["access_token"]}


async def active(c: httpx.AsyncClient, t: dict[str, str]) -> int:
    body = (
        await c.get(f"/v1/apps/{A}/portrait", params={"begin": "20240601", "end": "20240630", **t})
    ).json()
    return sum(r["value"] for r in body["visit_uv"]["genders"])


async def wait_active(c: httpx.AsyncClient, t: dict[str, str], n: int) -> None:
    deadline = time.monotonic() + 20
    while await active(c, t) != n:
        assert time.monotonic() < deadline, "events did not become visible"
        time.sleep(0.05)


@pytest.mark.anyio
async def test_batch_acknowledged_and_visible(live_settings: Settings) -> None:
    async with asgi_client(live_settings) as c:
        t = await tok(c)
        w = ingest_headers(live_settings, A)
        lines = [ev(1), {"appid": A, "ts": "2024-06-10T10:00:00Z"}, ev(2, age=-1),
                 {"appid": "wxother", "openid": "x", "ts": "2024-06-10T10:00:00Z"}, ev(3, device="iPhone 13")]  # fmt: skip
        ndjson = "\n".join(json.dumps(x) for x in lines) + "\n{broken\n"
        res = await c.post("/v1/events", headers=w, content=ndjson)
        assert res.json() == {
            "errcode": 0, "errmsg": "ok", "accepted": 2,
            "rejected": [
                {"index": 1, "reason": "openid is missing"},
                {"index": 2, "reason": "age is not a whole number of years in 0..150: -1"},
                {"index": 3, "reason": "appid does not match the ingest key's app"},
                {"index": 5, "reason": "not valid JSON"},
            ],
        }  # fmt: skip
        gz = gzip.compress(json.dumps([ev(4), ev(5)]).encode())
        res = await c.post("/v1/events", headers={**w, "content-encoding": "gzip"}, content=gz)
        assert res.json()["accepted"] == 2
        # retries with the same event_id count once
        for _ in range(3):
            await c.post(
                "/v1/events", headers=w, json=[ev(6, event_id="e-6"), ev(7, event_id="e-7")]
            )
        await wait_active(c, t, 6)


@pytest.mark.anyio
async def test_limits(live_settings: Settings) -> None:
    small = live_settings.replace(live_max_batch_records=3, live_max_body_bytes=2000)
    async with asgi_client(small) as c:
        w = ingest_headers(small, A)
        res = await c.post("/v1/events", headers=w, json=[ev(i) for i in range(4)])
        assert res.status_code == 413 and res.json()["errcode"] == 45002
        res = await c.post("/v1/events", headers=w, content=b"[" + b" " * 3000 + b"]")
        assert res.status_code == 413
        res = await c.post("/v1/events", content=b"x", headers={**w, "content-encoding": "gzip"})
        assert res.json()["errcode"] == 47001
        res = await c.post("/v1/events", json=[ev(1)])
        assert res.json()["errcode"] == 41001
        res = await c.post("/v1/events", params=await tok(c), json=[ev(1)])
        assert res.json()["errcode"] == 48001  # a read token does not write (issue 24)


@pytest.mark.anyio
async def test_backpressure_is_a_clear_retryable_error(live_settings: Settings) -> None:
    tight = live_settings.replace(live_max_pending_events=5, live_flush_interval_ms=60_000)
    async with asgi_client(tight) as c:
        w = ingest_headers(tight, A)
        assert (await c.post("/v1/events", headers=w, json=[ev(i) for i in range(5)])).json()[
            "accepted"
        ] == 5
        res = await c.post("/v1/events", headers=w, json=[ev(9)])
        assert res.status_code == 503 and res.headers["retry-after"] == "1"
        assert res.json()["errcode"] == -1 and "retry later" in res.json()["errmsg"]


JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3)
    ),
    max_leaves=6,
)
FIELD = st.sampled_from(["appid", "openid", "ts", "age", "gender", "province", "device", "x"])


@pytest.mark.anyio
async def test_random_malformed_payloads(live_settings: Settings) -> None:
    async with asgi_client(live_settings) as c:
        w = ingest_headers(live_settings, A)
        sent_valid: set[str] = set()

        @hsettings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
        @given(st.lists(st.one_of(JSONISH, st.dictionaries(FIELD, JSONISH, max_size=5)), max_size=6),
               st.integers(0, 10**9))  # fmt: skip
        def check(junk: list[Any], seed: int) -> None:
            good = ev(seed)
            batch = [*junk, good]
            res = httpx.Response(200)
            import anyio

            res = anyio.from_thread.run(lambda: c.post("/v1/events", headers=w, json=batch))
            body = res.json()
            if max(map(depth, batch)) > MAX_DEPTH:  # the JSON array is refused whole (issue 24)
                assert body["errcode"] == 47001
                assert "body is nested deeper than 3 levels" in body["errmsg"]
                return
            assert res.status_code == 200 and body["errcode"] == 0
            assert body["accepted"] + len(body["rejected"]) == len(batch)
            assert all(isinstance(r["reason"], str) and r["reason"] for r in body["rejected"])
            assert len(batch) - 1 not in [r["index"] for r in body["rejected"]]
            sent_valid.add(good["openid"])

        await anyio_to_thread(check)
        assert (await c.get("/healthz")).json()["status"] == "ok"
        lake = Lake(live_settings)
        await c.post("/v1/events", headers=w, json=[ev(-1)])
        deadline = time.monotonic() + 20
        while True:
            paths = lake.paths(A)
            got = set()
            if paths:
                got = {
                    r[0]
                    for r in duckdb.sql(
                        f"SELECT DISTINCT openid FROM read_parquet({paths})"
                    ).fetchall()
                }
            if sent_valid <= got or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert sent_valid <= got


async def anyio_to_thread(fn: Any) -> None:
    import anyio

    await anyio.to_thread.run_sync(fn)


@pytest.fixture
def server_proc(tmp_path: Path) -> Iterator[tuple[Path, Any, Any]]:
    data = tmp_path / "data"
    AuthStore(data / "meta.sqlite").add_app(A, SECRET)
    procs: list[subprocess.Popen[str]] = []

    def start() -> str:
        env = {
            **os.environ,
            "USERPORTRAIT_LIVE_FLUSH_INTERVAL_MS": "300",
            "USERPORTRAIT_DUCKDB_MEMORY_LIMIT_MB": "512",
        }
        p = subprocess.Popen(
            [sys.executable, "-m", "userportrait", "serve", "--data-dir", str(data), "--port", "0",
             "--no-wechat-limits"], env=env, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        procs.append(p)
        assert p.stderr is not None
        seen = []
        for line in p.stderr:
            seen.append(line)
            m = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", line)
            if m:
                threading.Thread(target=p.stderr.read, daemon=True).start()
                return m.group(1)
        raise RuntimeError("server did not start: " + "".join(seen[-20:]))

    def kill() -> None:
        procs[-1].send_signal(signal.SIGKILL)
        procs[-1].wait()  # an unlink already in the kernel completes before the process dies

    yield data, start, kill
    for p in procs:
        p.kill()
        p.wait()
        if p.stderr is not None:
            p.stderr.close()


@pytest.mark.serial
def test_sigkill_loses_no_acknowledged_event(server_proc: tuple[Path, Any, Any]) -> None:
    data, start, kill = server_proc
    key = AuthStore(data / "meta.sqlite").new_ingest_key(A)
    url = start()
    acked: set[str] = set()
    sent: set[str] = set()
    stop = threading.Event()

    def stream() -> None:
        with httpx.Client(base_url=url, timeout=10) as c:
            n = 0
            while not stop.is_set():
                batch = [ev(n + i, event_id=f"k{n + i}") for i in range(200)]
                n += 200
                sent.update(e["event_id"] for e in batch)
                try:
                    res = c.post(
                        "/v1/events", headers={"Authorization": f"Bearer {key}"}, json=batch
                    )
                except httpx.HTTPError:
                    return
                if res.status_code == 200 and res.json()["accepted"] == 200:
                    acked.update(e["event_id"] for e in batch)

    worker = threading.Thread(target=stream)
    worker.start()
    time.sleep(2.5)
    kill()
    stop.set()
    worker.join()
    assert len(acked) >= 1000
    url = start()  # restart: replays the WAL
    with httpx.Client(base_url=url, timeout=30) as c:
        t = c.get(
            "/cgi-bin/token",
            params={"grant_type": "client_credential", "appid": A, "secret": SECRET},
        ).json()
        deadline = time.monotonic() + 30
        while True:
            time.sleep(0.3)
            lake = Lake(Settings(data_dir=data))
            rows = (
                duckdb.sql(
                    f"SELECT count(*), count(DISTINCT event_id) FROM read_parquet({lake.paths(A)})"
                ).fetchall()[0]
                if lake.paths(A)
                else (0, 0)
            )
            if rows[1] >= len(acked) or time.monotonic() > deadline:
                break
        body = c.get(
            f"/v1/apps/{A}/portrait",
            params={"begin": "20240610", "end": "20240610", "access_token": t["access_token"]},
        ).json()
    ids = {
        r[0] for r in duckdb.sql(f"SELECT event_id FROM read_parquet({lake.paths(A)})").fetchall()
    }
    assert acked <= ids <= sent  # every acknowledged event, nothing invented
    assert rows[0] == rows[1]  # each exactly once
    assert sum(r["value"] for r in body["visit_uv"]["genders"]) == len(ids)


@pytest.mark.anyio
async def test_events_before_the_retention_cut_are_rejected(live_settings: Settings) -> None:
    lake = Lake(live_settings)
    expire(lake, dt.date(2024, 6, 10), A)  # (an app without events gets its cut too)
    async with asgi_client(live_settings) as c:
        w = ingest_headers(live_settings, A)
        late = ev(1, ts="2024-06-09T23:00:00+08:00")
        res = await c.post("/v1/events", headers=w, json=[late, ev(2)])
        assert res.json() == {
            "errcode": 0, "errmsg": "ok", "accepted": 1,
            "rejected": [{"index": 0, "reason": "ts is before the retention cut 20240610 of its "
                          "app: 2024-06-09T23:00:00+08:00"}],
        }  # fmt: skip
