"""Events that carry only what a client reports (model, brand, system, user_agent; issue 17)
give the portrait a person expects, through every ingest path and every embedded engine."""

from __future__ import annotations

import csv
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import write_ndjson
from tests.portrait.test_devices import UA_ANDROID_XIAOMI, UA_HARMONY_NEXT, UA_WINDOWS
from tests.server import asgi_client, ingest_headers
from userportrait.auth.store import AuthStore
from userportrait.engine import get_engine
from userportrait.ingest.pipeline import ingest_file
from userportrait.portrait.query import PortraitQuery
from userportrait.portrait.rules import FIELDS
from userportrait.portrait.service import portrait
from userportrait.settings import Settings
from userportrait.store.lake import Lake

A = "wxclient00000001"
SECRET = "client-secret-1"
TS = "2024-06-10T10:00:00+08:00"


def _ev(openid: str, **fields: str) -> dict[str, Any]:
    return {"appid": A, "openid": openid, "ts": TS, **fields}


EVENTS = [
    _ev("u1", model="iPhone 13<iPhone14,5>", brand="iPhone", system="iOS 17.0"),
    _ev("u2", user_agent=UA_ANDROID_XIAOMI),
    _ev("u3", model="M2012K11AC", brand="Xiaomi", system="Android 13"),
    _ev("u4", model="iPhone14,5"),  # the model alone: no platform
    _ev("u5", model="microsoft", brand="microsoft", system="Windows 10 x64", user_agent=UA_WINDOWS),
    _ev("u6", model="iPhone 12/13 (Pro)", brand="devtools", system="iOS 10.0.1"),
    _ev("u7", device="OPPO R9", platform="android"),  # the fields of before, unchanged
    _ev("u8", user_agent=UA_HARMONY_NEXT),
    {**_ev("u1"), "ts": "2024-06-10T11:00:00+08:00"},  # later, reports nothing: u1 stays
]
DEVICES = [
    {"name": "iPhone 13", "value": 2},
    {"name": "OPPO R9", "value": 1},
    {"name": "Redmi K40", "value": 1},
    {"name": "Xiaomi 12T Pro", "value": 1},
    {"name": "devtools", "value": 1},
    {"name": "microsoft", "value": 1},
    {"name": "未知", "value": 1},
]
PLATFORMS = [
    {"id": 2, "name": "Android", "value": 3},
    {"id": 0, "name": "未知", "value": 1},
    {"id": 1, "name": "iPhone", "value": 1},
    {"id": 3, "name": "HarmonyOS", "value": 1},
    {"id": 4, "name": "Windows", "value": 1},
    {"id": 6, "name": "其他", "value": 1},
]


def _write(path: Path) -> Path:
    if path.suffix == ".ndjson":
        return write_ndjson(path, EVENTS)
    rows = [{f: e.get(f) for f in FIELDS if f not in ("event_id", "age")} for e in EVENTS]
    if path.suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("fmt", ["ndjson", "csv", "parquet"])
def test_bulk_ingest_derives_device_and_platform(lake: Lake, tmp_path: Path, fmt: str) -> None:
    report = ingest_file(lake, _write(tmp_path / f"events.{fmt}"))
    assert (report.accepted, report.rejected) == (len(EVENTS), 0)
    q = PortraitQuery(A, dt.date(2024, 6, 10), dt.date(2024, 6, 10))
    for engine in ("reference", "sql", "incremental"):
        body = portrait(q, get_engine(engine, lake))
        assert body["visit_uv"]["devices"] == DEVICES, engine
        assert body["visit_uv"]["platforms"] == PLATFORMS, engine
    # The lake keeps the raw strings, the UA in its compact form (docs/storage.md).
    glob = str(lake.events_dir / "*" / "*" / "*.parquet")
    rows = duckdb.connect().execute(
        f"SELECT device, platform_id, device_raw, model_raw, brand_raw, system_raw, ua_compact "
        f"FROM read_parquet('{glob}') WHERE openid IN ('u2', 'u3', 'u7') ORDER BY openid"
    )
    assert rows.fetchall() == [
        ("Xiaomi 12T Pro", 2, None, None, None, None,
         "(Linux; Android 13; 22081212C Build/TKQ1.220829.002; wv) MiniProgramEnv/android"),
        ("Redmi K40", 2, None, "M2012K11AC", "Xiaomi", "Android 13", None),
        ("OPPO R9", 2, "OPPO R9", None, None, None, None),
    ]  # fmt: skip
    # Written from ENUMs (issue 14), read back as plain strings.
    text = ("device", "device_raw", "model_raw", "brand_raw", "system_raw", "ua_compact")
    schema = pq.read_schema(lake.paths(A)[0])
    assert [str(schema.field(c).type) for c in (*text, "platform_raw")] == ["string"] * 7


def test_a_file_without_client_fields_writes_no_client_columns(lake: Lake, tmp_path: Path) -> None:
    ingest_file(lake, write_ndjson(tmp_path / "e.ndjson", [_ev("u1", device=" Mi 8 ")]))
    (path,) = lake.paths(A)
    assert pq.read_schema(path).names[-2:] == ["age_id", "batch_id"]
    assert pq.read_table(path).column("device").to_pylist() == ["Mi 8"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_live_ingest_derives_device_and_platform(settings: Settings) -> None:
    AuthStore(settings.data_dir / "meta.sqlite").add_app(A, SECRET)
    live = settings.replace(wechat_limits=False, live_flush_interval_ms=100)
    async with asgi_client(live) as c:
        token = (
            await c.get(
                "/cgi-bin/token",
                params={"grant_type": "client_credential", "appid": A, "secret": SECRET},
            )
        ).json()["access_token"]
        t = {"access_token": token}
        w = ingest_headers(live, A)
        res = await c.post("/v1/events", headers=w, content=json.dumps(EVENTS))
        assert res.json()["accepted"] == len(EVENTS)
        deadline = time.monotonic() + 20
        while True:
            body = await _portrait(c, t)
            if sum(r["value"] for r in body["visit_uv"]["genders"]) == 8:
                break
            assert time.monotonic() < deadline, "events did not become visible"
            time.sleep(0.05)
        assert body["visit_uv"]["devices"] == DEVICES
        assert body["visit_uv"]["platforms"] == PLATFORMS


async def _portrait(c: httpx.AsyncClient, t: dict[str, str]) -> dict[str, Any]:
    res = await c.get(
        f"/v1/apps/{A}/portrait", params={"begin": "20240610", "end": "20240610", **t}
    )
    body: dict[str, Any] = res.json()
    return body


def test_compaction_merges_files_with_and_without_client_columns(
    lake: Lake, tmp_path: Path
) -> None:
    from userportrait.store.compact import compact

    before_17 = [_ev(f"o{i}", device="OPPO R9", platform="android") for i in range(3)]
    ingest_file(lake, write_ndjson(tmp_path / "old.ndjson", before_17))
    old = lake.events_dir / f"appid={A}" / "day=2024-06-10"
    # A file without client fields has no client columns, as lake files from before them.
    assert "model_raw" not in pq.read_schema(next(old.glob("*.parquet"))).names
    ingest_file(lake, write_ndjson(tmp_path / "more.ndjson", [_ev("u9", model="SM-G9910")]))
    q = PortraitQuery(A, dt.date(2024, 6, 10), dt.date(2024, 6, 10))
    before = portrait(q, get_engine("reference", lake))
    assert portrait(q, get_engine("sql", lake)) == before
    report = compact(lake, min_files=2)
    assert report.partitions == 1
    (merged,) = lake.paths(A)
    rows = duckdb.connect().execute(f"SELECT openid, model_raw FROM read_parquet('{merged}')")
    assert ("u9", "SM-G9910") in rows.fetchall()  # the newer file's raw columns are kept
    ref = portrait(q, get_engine("reference", lake))["visit_uv"]["devices"]
    assert {"name": "Samsung Galaxy S21 5G", "value": 1} in ref
    assert portrait(q, get_engine("sql", lake))["visit_uv"]["devices"] == ref
