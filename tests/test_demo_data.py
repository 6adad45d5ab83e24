"""The generated demo data looks like a real app's portrait (issue 27): regions weighted by
population, phones of the last three years."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from userportrait.engine import get_engine
from userportrait.ingest.pipeline import ingest_file
from userportrait.portrait.query import PortraitQuery
from userportrait.portrait.service import portrait
from userportrait.settings import Settings
from userportrait.store.lake import Lake
from userportrait.synthetic.demo import APPS, DEMO_APPID
from userportrait.synthetic.generate import GeneratorConfig, write_events

# The demo's generator settings (synthetic/demo.py) on fewer users and days.
CONFIG = GeneratorConfig(users=8000, days=8, end=dt.date(2026, 11, 30), apps=len(APPS), seed=13)
# Released in 2023 or later (Apple's, Huawei's, ... launch dates).
RECENT = {
    "iPhone 15", "iPhone 15 Pro", "iPhone 15 Pro Max", "iPhone 16", "iPhone 16 Plus",
    "iPhone 16 Pro", "iPhone 16 Pro Max", "iPhone 16e", "iPhone 17", "iPhone 17 Pro",
    "iPhone 17 Pro Max", "iPhone Air", "Huawei Mate 60 Pro", "Huawei Mate 60",
    "Huawei Mate 70 Pro", "Huawei Pura 70 Pro", "Vivo X100", "OPPO Reno 12", "Honor X50",
}  # fmt: skip


@pytest.fixture(scope="module")
def body(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root: Path = tmp_path_factory.mktemp("demo-data")
    src = root / "events.parquet"
    write_events(src, CONFIG)
    lake = Lake(Settings(data_dir=root / "data", duckdb_memory_limit_mb=512))
    assert ingest_file(lake, src).rejected == 0
    engine = get_engine("duckdb", lake)
    try:
        return portrait(PortraitQuery(DEMO_APPID, CONFIG.start, CONFIG.end), engine)
    finally:
        engine.close()


def _names(rows: object) -> list[str]:
    """Names by value, largest first, without 未知 and 其他."""
    assert isinstance(rows, list)
    ranked = sorted(rows, key=lambda r: -r["value"])
    return [r["name"] for r in ranked if r["name"] not in ("未知", "其他")]


def test_top_cities_are_big_cities(body: dict[str, object]) -> None:
    active = body["visit_uv"]
    assert isinstance(active, dict)
    top3 = _names(active["city"])[:3]
    assert {"深圳", "广州"} & set(top3) and "韶关" not in top3, top3
    assert _names(active["province"])[0] == "广东省"
    value = {r["name"]: r["value"] for r in active["province"]}
    for small in ("澳门特别行政区", "台湾省", "香港特别行政区"):
        assert value.get(small, 0) < value["青海省"] / 2, value


def test_top_devices_are_recent_phones(body: dict[str, object]) -> None:
    active = body["visit_uv"]
    assert isinstance(active, dict)
    top = _names(active["devices"])[:8]
    assert set(top) <= RECENT, top
