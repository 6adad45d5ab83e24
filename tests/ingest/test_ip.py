"""Events that carry only an ``ip`` (issue 17): the portrait a person expects, every path.

Bulk (NDJSON and CSV), live HTTP and every embedded engine give the same exact answer;
``tests/test_spark.py`` ingests an ip file on Spark and compares the lake rows.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from tests.conftest import ingest_in_a_fresh_process, load, write_ndjson
from tests.fixtures import IP_VISITS
from tests.server import asgi_client, ingest_headers
from userportrait.auth.store import AuthStore
from userportrait.engine import get_engine
from userportrait.portrait.query import PortraitQuery
from userportrait.portrait.service import portrait
from userportrait.settings import Settings
from userportrait.store.lake import Lake

A = "wxip0000000000001"
DAY = dt.date(2026, 1, 5)
TS = "2026-01-05T10:00:00+08:00"

EVENTS = [{"appid": A, "openid": o, "ts": TS, **f} for o, f in IP_VISITS]

PROVINCE = [
    {"id": 0, "name": "未知", "value": 5},
    {"id": 11, "name": "北京市", "value": 2},
    {"id": 32, "name": "江苏省", "value": 2},
    {"id": 44, "name": "广东省", "value": 2},
    {"id": 33, "name": "浙江省", "value": 1},
    {"id": 51, "name": "四川省", "value": 1},
    {"id": 81, "name": "香港特别行政区", "value": 1},
    {"id": 99, "name": "其他", "value": 1},
]
CITY = [
    {"id": 0, "name": "未知", "value": 8},
    {"id": 1101, "name": "北京", "value": 2},
    {"id": 3201, "name": "南京", "value": 2},
    {"id": 3301, "name": "杭州", "value": 1},
    {"id": 4401, "name": "广州", "value": 1},
    {"id": 4403, "name": "深圳", "value": 1},
]


def _regions(lake: Lake, engine: str) -> tuple[Any, Any]:
    eng = get_engine(engine, lake)
    try:
        body = portrait(PortraitQuery(A, DAY, DAY), eng)
    finally:
        eng.close()
    return body["visit_uv"]["province"], body["visit_uv"]["city"]


def _lake(lake: Lake, columns: str) -> list[tuple[Any, ...]]:
    files = lake.paths(A)  # the committed files (compaction leaves retired ones a while)
    return duckdb.sql(
        f"SELECT {columns} FROM read_parquet({files}, union_by_name=true) ORDER BY openid"
    ).fetchall()


@pytest.mark.parametrize("engine", ["reference", "sql", "incremental"])
def test_bulk_ingest_regions_from_ip(lake: Lake, engine: str) -> None:
    report = load(lake, EVENTS)
    assert (report.accepted, report.rejected) == (len(EVENTS), 0)
    assert _regions(lake, engine) == (PROVINCE, CITY)


def test_lake_keeps_the_prefix_not_the_address(lake: Lake) -> None:
    load(lake, EVENTS[:4] + EVENTS[9:12])
    assert _lake(lake, "openid, ip_prefix, ip") == [
        ("beijing", "180.76.76.0/24", None),
        ("garbage", None, None),
        ("hangzhou", "223.5.5.0/24", None),
        ("ipv6", "240e:3b7:3272::/48", None),
        ("leading0", None, None),
        ("nanjing", "114.114.114.0/24", None),
        ("nanjing2", "114.114.114.0/24", None),
    ]


def test_store_raw_ip_keeps_the_address(settings: Settings) -> None:
    lake = Lake(settings.replace(store_raw_ip=True))
    load(lake, EVENTS[2:4])
    assert _lake(lake, "openid, ip_prefix, ip") == [
        ("beijing", "180.76.76.0/24", "180.76.76.76"),
        ("hangzhou", "223.5.5.0/24", "223.5.5.5"),
    ]


def test_csv_with_an_ip_column(lake: Lake) -> None:
    path = lake.root.parent / "events.csv"
    path.write_text(
        "appid,openid,ts,ip\n"
        f"{A},a,{TS},114.114.114.114\n"
        f'{A},b,{TS}," 202.175.3.3 "\n'
        f"{A},c,{TS},\n",
        "utf-8",
    )
    from userportrait.ingest.pipeline import ingest_file

    assert ingest_file(lake, path).accepted == 3
    assert (
        _regions(lake, "reference")
        == _regions(lake, "sql")
        == (
            [
                {"id": 0, "name": "未知", "value": 1},
                {"id": 32, "name": "江苏省", "value": 1},
                {"id": 82, "name": "澳门特别行政区", "value": 1},
            ],
            [{"id": 0, "name": "未知", "value": 2}, {"id": 3201, "name": "南京", "value": 1}],
        )
    )


def test_live_ingest_regions_from_ip(settings: Settings) -> None:
    AuthStore(settings.data_dir / "meta.sqlite").add_app(A, "ip-secret")
    live = settings.replace(wechat_limits=False, live_flush_interval_ms=100)

    async def run() -> tuple[Any, Any]:
        async with asgi_client(live) as c:
            res = await c.get(
                "/cgi-bin/token",
                params={"grant_type": "client_credential", "appid": A, "secret": "ip-secret"},
            )
            t = {"access_token": res.json()["access_token"]}
            res = await c.post("/v1/events", headers=ingest_headers(live, A), json=EVENTS)
            assert res.json() == {
                "errcode": 0,
                "errmsg": "ok",
                "accepted": len(EVENTS),
                "rejected": [],
            }
            for _ in range(200):
                body = (
                    await c.get(
                        f"/v1/apps/{A}/portrait",
                        params={"begin": "20260105", "end": "20260105", **t},
                    )
                ).json()
                active = body["visit_uv"]
                if sum(r["value"] for r in active["genders"]) == len(EVENTS):
                    return active["province"], active["city"]
                await asyncio.sleep(0.05)
            raise AssertionError("events never became visible")

    assert asyncio.run(run()) == (PROVINCE, CITY)
    lake = Lake(live)
    for engine in ("reference", "sql"):
        assert _regions(lake, engine) == (PROVINCE, CITY)


def test_a_lake_from_before_issue_17_compacts_with_new_files(lake: Lake) -> None:
    from userportrait.store.compact import compact

    load(lake, [EVENTS[-1] | {"openid": "old", "ip": None}], "old.ndjson")
    (old,) = lake.files(A)
    path = lake.root / old.path  # as written before issue 17: no ip columns
    pq.write_table(pq.read_table(path).drop_columns(["ip_prefix", "ip"]), path)
    load(lake, EVENTS[:1], "new.ndjson")
    assert compact(lake, min_files=2).files_merged == 2
    assert _lake(lake, "openid, ip_prefix") == [
        ("nanjing", "114.114.114.0/24"),
        ("old", None),
    ]
    assert (
        _regions(lake, "reference")
        == _regions(lake, "sql")
        == (
            [{"id": 32, "name": "江苏省", "value": 1}, {"id": 51, "name": "四川省", "value": 1}],
            [{"id": 0, "name": "未知", "value": 1}, {"id": 3201, "name": "南京", "value": 1}],
        )
    )


def test_a_fresh_ingest_of_ips_imports_no_pandas(tmp_path: Path) -> None:
    """The ip maps go into DuckDB as numpy columns and list parameters: a pyarrow table
    would import pandas (0.5 s of a fresh ``ingest`` process when it is installed)."""
    src = write_ndjson(tmp_path / "ip.ndjson", EVENTS)
    assert ingest_in_a_fresh_process(src, tmp_path / "d") == (len(EVENTS), [], False)
