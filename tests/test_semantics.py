"""Every engine against hand-built events with exact expected JSON (docs/semantics.md)."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.conftest import load
from tests.fixtures import DAY_0609, EMPTY, EVENTS, WINDOW_0610_0612, A
from userportrait.engine import ENGINES, get_engine
from userportrait.portrait.query import PortraitQuery
from userportrait.portrait.service import portrait
from userportrait.store.lake import Lake

ENGINE_NAMES = sorted(ENGINES)


def run(lake: Lake, engine: str, begin: str, end: str, appid: str = A) -> dict[str, object]:
    q = PortraitQuery(appid, dt.date.fromisoformat(begin), dt.date.fromisoformat(end))
    eng = get_engine(engine, lake)
    try:
        return portrait(q, eng)
    finally:
        eng.close()


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_window_exact_json(lake: Lake, engine: str) -> None:
    load(lake, EVENTS)
    assert run(lake, engine, "2024-06-10", "2024-06-12") == WINDOW_0610_0612


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_one_day_before_midnight_utc(lake: Lake, engine: str) -> None:
    load(lake, EVENTS)
    assert run(lake, engine, "2024-06-09", "2024-06-09") == DAY_0609


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_no_data_gives_six_empty_keys(lake: Lake, engine: str) -> None:
    load(lake, EVENTS)
    body = run(lake, engine, "2023-01-01", "2023-01-30")
    assert body == {"ref_date": "20230101-20230130", "visit_uv_new": EMPTY, "visit_uv": EMPTY}
    assert run(lake, engine, "2024-06-10", "2024-06-10", appid="wxnope")["visit_uv"] == EMPTY


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_late_event_moves_first_day_earlier(lake: Lake, engine: str) -> None:
    load(lake, [{"appid": A, "openid": "late", "ts": "2024-06-11T08:00:00+08:00"}], "a.ndjson")
    assert run(lake, engine, "2024-06-10", "2024-06-12")["visit_uv_new"]["genders"] == [  # type: ignore[index]
        {"id": 0, "name": "未知", "value": 1}
    ]
    load(lake, [{"appid": A, "openid": "late", "ts": "2024-06-02T08:00:00+08:00"}], "b.ndjson")
    body = run(lake, engine, "2024-06-10", "2024-06-12")
    assert body["visit_uv_new"] == EMPTY
    assert body["visit_uv"]["genders"] == [{"id": 0, "name": "未知", "value": 1}]  # type: ignore[index]


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_top_20_devices_and_name_order(lake: Lake, engine: str) -> None:
    events = [
        {
            "appid": A,
            "openid": f"d{i}-{j}",
            "ts": "2024-06-10T10:00:00+08:00",
            "device": f"M{i:02d}",
        }
        for i in range(25)
        for j in range(1 + (i % 3))
    ]
    load(lake, events)
    devices = run(lake, engine, "2024-06-10", "2024-06-10")["visit_uv"]["devices"]  # type: ignore[index]
    assert len(devices) == 20
    expected = sorted(((1 + i % 3, f"M{i:02d}") for i in range(25)), key=lambda t: (-t[0], t[1]))
    assert devices == [{"name": n, "value": v} for v, n in expected[:20]]


def test_province_rows_sum_to_users(lake: Lake) -> None:
    load(lake, EVENTS)
    body = run(lake, "duckdb", "2024-06-01", "2024-06-30")
    for dim in ("province", "city", "genders", "platforms", "ages"):
        assert sum(r["value"] for r in body["visit_uv"][dim]) == 5  # type: ignore[index]


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_equal_ts_the_larger_value_wins(lake: Lake, engine: str) -> None:
    # Same user, same instant: the larger id wins, and for devices the larger name in byte
    # order (lower case after upper case, CJK after ASCII), whichever file came first.
    ts = "2024-06-10T10:00:00+08:00"
    pairs = [("iPhone 15", "Mi 14"), ("华为 Mate 60", "iPhone 15"), ("ab", "aB"), ("M1", "M10")]
    for i, (x, y) in enumerate(pairs):
        one = {"appid": A, "openid": f"u{i}", "ts": ts, "gender": "1", "device": x}
        two = {"appid": A, "openid": f"u{i}", "ts": ts, "gender": "2", "device": y}
        load(lake, [one], f"x{i}.ndjson")
        load(lake, [two], f"y{i}.ndjson")
    body = run(lake, engine, "2024-06-10", "2024-06-10")["visit_uv"]
    winners = sorted(max(p) for p in pairs)
    assert body["devices"] == [{"name": n, "value": winners.count(n)} for n in sorted(set(winners))]  # type: ignore[index]
    assert body["genders"] == [{"id": 2, "name": "女", "value": 4}]  # type: ignore[index]
