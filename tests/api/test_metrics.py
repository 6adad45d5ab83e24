"""``GET /metrics``: Prometheus text behind the admin key, parsed by prometheus-client."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures import A
from tests.server import app_client, assert_error, ingest_headers, token
from userportrait.app import create_app
from userportrait.dashboard.sessions import write_admin_key
from userportrait.settings import Settings

pytestmark = pytest.mark.anyio
KEY = "metrics-admin-key-01"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``(name, sorted labels) -> value`` of every sample, as a scraper reads them."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def scrape(c: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    res = await c.get("/metrics", headers={"Authorization": f"Bearer {KEY}"})
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/plain")
    return samples(res.text)


async def test_metrics_need_the_admin_key(api_settings: Settings) -> None:
    async with app_client(create_app(api_settings)) as c:
        assert_error(await c.get("/metrics"), 41001, "access_token missing")
        write_admin_key(api_settings.data_dir, KEY)
        res = await c.get("/metrics", headers={"Authorization": "Bearer not-the-key"})
        assert_error(res, 40001, "invalid credential")
        assert await scrape(c)
    async with app_client(create_app(api_settings.replace(metrics_open=True))) as c:
        assert (await c.get("/metrics")).status_code == 200


async def test_what_the_server_did_is_counted(api_settings: Settings) -> None:
    write_admin_key(api_settings.data_dir, KEY)
    async with app_client(create_app(api_settings)) as c:
        before = await scrape(c)
        t = await token(c)
        path = f"/v1/apps/{A}/portrait"
        for _ in range(2):
            res = await c.get(
                path, params={"begin": "20240610", "end": "20240612", "access_token": t}
            )
            assert res.json()["ref_date"]
        await c.get(path, params={"begin": "20240610", "end": "20240612", "access_token": "x"})
        events = [
            {"appid": A, "openid": "m1", "ts": "2024-06-12T10:00:00+08:00"},
            {"appid": A, "openid": "", "ts": "2024-06-12T10:00:00+08:00"},
        ]
        res = await c.post("/v1/events", json=events, headers=ingest_headers(api_settings))
        assert res.json()["accepted"] == 1
        await c.get(
            "/cgi-bin/token",
            params={"grant_type": "client_credential", "appid": A, "secret": "wrong-one"},
        )
        after = await scrape(c)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    route = "/v1/apps/{appid}/portrait"
    assert grew("userportrait_requests_total", route=route, method="GET", errcode="0") == 2
    assert grew("userportrait_requests_total", route=route, method="GET", errcode="40001") == 1
    assert grew("userportrait_request_duration_seconds_count", route=route) == 3
    assert grew("userportrait_records_accepted_total", kind="events") == 1
    rejected = [k for k in after if k[0] == "userportrait_records_rejected_total"]
    assert sum(after[k] - before.get(k, 0) for k in rejected) == 1  # the process's counters
    assert grew("userportrait_secret_checks_total", outcome="wrong") == 1
    assert grew("userportrait_secret_checks_total", outcome="right") >= 1
    assert after[("userportrait_lake_files", ())] >= 1
    assert after[("userportrait_lake_events", ())] >= 1
    assert after[("userportrait_lake_bytes", ())] > 0
    assert ("userportrait_live_pending_events", ()) in after
    assert ("userportrait_state_lag_batches", ()) in after
