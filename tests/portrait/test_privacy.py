"""Small-count protection (issue 16): folding, complementary suppression, and an attacker."""

from __future__ import annotations

import datetime as dt
import json
import random
from typing import Any

import pytest

from tests.conftest import load
from tests.portrait.privacy_attack import attack
from userportrait.engine import get_engine
from userportrait.errors import InvalidDateRange
from userportrait.portrait import regions
from userportrait.portrait.counts import AudienceCounts, PortraitCounts
from userportrait.portrait.privacy import (
    CITY_REST,
    OTHER_DEVICE,
    OTHER_ID,
    _const,
    fold,
    protect,
)
from userportrait.portrait.query import PortraitQuery
from userportrait.portrait.request import make_query
from userportrait.portrait.result import audience_rows, shape
from userportrait.portrait.service import portrait
from userportrait.settings import Settings
from userportrait.store.lake import Lake

APP = "wxprotected0000001"
END = dt.date(2024, 3, 10)
DAYS = 8


def audience(**ids: dict[int, int]) -> AudienceCounts:
    out = AudienceCounts()
    for dim, counts in ids.items():
        if dim == "devices":
            out.devices = counts  # type: ignore[assignment]
        else:
            out.ids[dim] = counts  # type: ignore[index]
    return out


def test_small_rows_fold_into_other_with_a_second_row() -> None:
    active = audience(genders={1: 50, 2: 2, 0: 30}, platforms={1: 40, 2: 39, 5: 3},
                      ages={3: 80, 0: 2}, devices={"iPhone 13": 60, "OPPO R9": 20, "PC": 2})  # fmt: skip
    new = audience(genders={1: 9, 2: 1, 0: 7}, platforms={1: 9, 2: 8}, ages={3: 17},
                   devices={"iPhone 13": 12, "OPPO R9": 5})  # fmt: skip
    rows = audience_rows(protect(PortraitCounts(new, active), 5).active)
    # 女 (2) folds with the smallest shown row, 未知 (30): "其他 minus the rest" names no one.
    assert rows["genders"] == [{"id": 1, "name": "男", "value": 50},
                               {"id": 99, "name": "其他", "value": 32}]  # fmt: skip
    assert rows["platforms"] == [{"id": 6, "name": "其他", "value": 42},
                                 {"id": 1, "name": "iPhone", "value": 40}]  # fmt: skip
    # One real row only: it folds alone (82 users of some age: the table has 7 of them).
    assert rows["ages"] == [{"id": 99, "name": "其他", "value": 82}]
    assert rows["devices"] == [{"name": "iPhone 13", "value": 60}, {"name": "其他", "value": 22}]
    new_rows = audience_rows(protect(PortraitCounts(new, active), 5).new)
    # New users hide what active users hide: OPPO R9 (5), which then needs a second row.
    assert new_rows["devices"] == [{"name": "其他", "value": 17}]
    assert new_rows["genders"] == [{"id": 1, "name": "男", "value": 9},
                                   {"id": 99, "name": "其他", "value": 8}]  # fmt: skip


def test_cities_fold_within_their_province_or_with_it() -> None:
    active = audience(province={44: 40, 11: 3, 51: 20},
                      city={4401: 30, 4403: 8, 4405: 2, 1101: 3, 5101: 20})  # fmt: skip
    out = audience_rows(protect(PortraitCounts(AudienceCounts(), active), 5).active)
    # 4405 (2) hides with 深圳 (8) in 广东's 其他 city; 北京 (3) folds with the smallest
    # other province, 四川 (20), whose cities go with it to 9999.
    assert out["province"] == [{"id": 44, "name": "广东省", "value": 40},
                               {"id": 99, "name": "其他", "value": 23}]  # fmt: skip
    assert out["city"] == [{"id": 4401, "name": "广州", "value": 30},
                           {"id": 9999, "name": "其他", "value": 23},
                           {"id": 4499, "name": "其他", "value": 10}]  # fmt: skip


def test_threshold_off_changes_nothing() -> None:
    counts = PortraitCounts(audience(genders={1: 1}), audience(genders={1: 2, 2: 1}))
    assert protect(counts, 1) is counts
    q = PortraitQuery(APP, END, END)
    assert make_query(APP, END, END) == q and q.threshold is None


def test_protected_app_answers_only_wechat_windows() -> None:
    today = END + dt.timedelta(days=5)
    make_query(APP, END - dt.timedelta(days=6), END, threshold=5, today=today)
    for begin, end in [(END - dt.timedelta(days=7), END), (END, END + dt.timedelta(days=4))]:
        with pytest.raises(InvalidDateRange, match="small-count threshold"):
            make_query(APP, begin, end, threshold=5, today=today)
    make_query(APP, END - dt.timedelta(days=7), END, today=today)  # unprotected: any window


DEVICES = [f"Phone {i}" for i in range(30)]


def events(seed: int) -> list[dict[str, Any]]:
    """Users with many small cells; each keeps one city, so cities sum to their province."""
    rnd = random.Random(seed)
    provinces = [p for p, _ in regions.all_provinces()][:14]
    cities = {p: [c for c, _, cp in regions.all_cities() if cp == p][:5] for p in provinces}
    out: list[dict[str, Any]] = []
    start = END - dt.timedelta(days=DAYS - 1)
    for u in range(260):
        p = rnd.choices(provinces, weights=[1 / (i + 1) for i in range(len(provinces))])[0]
        city = rnd.choices(cities[p], weights=[1 / (i + 1) for i in range(len(cities[p]))])[0]
        attrs: dict[str, Any] = {
            "gender": rnd.choice([1, 2, 1, 2, 0]),
            "platform": rnd.choice(["ios", "android", "android", "ohos", "mac", "PlayStation"]),
            "device": rnd.choices(DEVICES, weights=[1 / (i + 1) for i in range(30)])[0],
            "age": rnd.randint(10, 70),
        }
        if rnd.random() < 0.85:
            attrs.update(province=str(p), city=str(city))
        first = rnd.randrange(-3, DAYS)
        for day in sorted({first, *(rnd.randrange(max(first, 0), DAYS) for _ in range(2))}):
            ts = dt.datetime.combine(start + dt.timedelta(days=day), dt.time(12))
            out.append({"appid": APP, "openid": f"u{u}", "ts": ts.isoformat(), **attrs})
    return out


def windows() -> list[tuple[dt.date, dt.date]]:
    """Every window a protected app answers that touches the data (1, 7 and 30 days)."""
    start = END - dt.timedelta(days=DAYS + 3)
    out = []
    for span in (1, 7, 30):
        e = start
        while e <= END + dt.timedelta(days=span - 1):
            out.append((e - dt.timedelta(days=span - 1), e))
            e += dt.timedelta(days=1)
    return out


@pytest.mark.parametrize("k", [5, pytest.param(3, marks=pytest.mark.slow)])
def test_attacker_recovers_no_folded_count(settings: Settings, k: int) -> None:
    lake = Lake(settings)
    load(lake, events(seed=k))
    engine = get_engine("duckdb", lake)
    seen: set[str] = set()
    folded = 0
    try:
        for begin, end in windows():
            query = make_query(APP, begin, end, threshold=k, today=END + dt.timedelta(days=40))
            body = portrait(query, engine)
            raw = engine.run_portrait(query)
            key = json.dumps([body, portrait(PortraitQuery(APP, begin, end), engine)])
            if key in seen:
                continue
            seen.add(key)
            for aud in ("visit_uv_new", "visit_uv"):
                for dim, rows in body[aud].items():
                    for r in rows:  # no row below k is shown, but for a 其他 row
                        assert r["value"] >= k or r["name"] == "其他", (begin, end, dim, r)
            folded += sum(
                1 for aud in (raw.new, raw.active) for d in aud.ids.values() for v in d.values()
                if 0 < v < k
            )  # fmt: skip
            assert attack(body, raw, k, DEVICES + [None], cities_in_provinces=True) == [], (
                begin, end,
            )  # fmt: skip
    finally:
        engine.close()
    assert len(seen) > 20 and folded > 500  # the attack had plenty to find


def naive(counts: PortraitCounts, k: int) -> PortraitCounts:
    """Folding without complementary suppression (what the attacker must defeat)."""
    out = PortraitCounts(AudienceCounts(), AudienceCounts())
    for src, dst in ((counts.new, out.new), (counts.active, out.active)):
        for dim, rows in src.ids.items():
            small = {v for v, n in rows.items() if 0 < n < k}
            dst.ids[dim] = fold(rows, small, _const(OTHER_ID.get(dim, 0)))
        shown = {p for p, n in src.ids["province"].items() if n >= k} - {0, 99}
        cities = src.ids["city"]
        dst.ids["city"] = fold(
            cities, {c for c, n in cities.items() if 0 < n < k or c // 100 not in shown},
            lambda c, shown=shown: c // 100 * 100 + 99 if c // 100 in shown else CITY_REST,
        )  # fmt: skip
        dst.devices = fold(src.devices, {d for d, n in src.devices.items() if 0 < n < k},
                           lambda _: OTHER_DEVICE)  # fmt: skip
    return out


def test_the_attacker_breaks_folding_without_complements(settings: Settings) -> None:
    lake = Lake(settings)
    load(lake, events(seed=5))
    engine = get_engine("duckdb", lake)
    found = []
    try:
        for begin, end in windows()[: DAYS + 4]:  # the 1-day windows
            query = PortraitQuery(APP, begin, end)
            raw = engine.run_portrait(query)
            found += attack(shape(query, naive(raw, 5)), raw, 5, DEVICES + [None])
    finally:
        engine.close()
    assert len(found) >= 5 and any(f.startswith("active") for f in found), found


def test_the_cross_window_limit_is_real(settings: Settings) -> None:
    """docs/privacy.md's stated limit: a week's new users minus its days' shown rows."""
    lake = Lake(settings)
    day = [END - dt.timedelta(days=6 - i) for i in range(7)]

    def visit(user: str, d: dt.date, province: str) -> dict[str, Any]:
        return {"appid": APP, "openid": user, "ts": f"{d.isoformat()}T12:00:00+08:00",
                "province": province, "gender": 1}  # fmt: skip

    load(lake, [visit("lone", day[0], "西藏"), *(visit(f"x{i}", day[1], "西藏") for i in range(3)),
                *(visit(f"g{i}", d, "广东") for i, d in enumerate(day * 3))])  # fmt: skip
    engine = get_engine("duckdb", lake)
    try:
        today = END + dt.timedelta(days=1)
        week = portrait(make_query(APP, day[0], END, threshold=3, today=today), engine)
        days = [portrait(make_query(APP, d, d, threshold=3, today=today), engine) for d in day]
    finally:
        engine.close()

    def tibet(body: dict[str, Any]) -> int:
        return sum(r["value"] for r in body["visit_uv_new"]["province"] if r["id"] == 54)

    assert [tibet(b) for b in days] == [0, 3, 0, 0, 0, 0, 0]  # day 0's one user is folded
    assert tibet(week) - sum(tibet(b) for b in days) == 1  # ... and the week gives it away
