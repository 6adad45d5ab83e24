"""Profiles fill gaps (docs/semantics.md): hand-built events and profiles, exact answers."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import load, write_ndjson
from userportrait.engine import get_engine
from userportrait.engine.base import Engine
from userportrait.ingest.profiles import ingest_profiles_file
from userportrait.portrait.query import PortraitQuery
from userportrait.portrait.service import portrait
from userportrait.store.lake import Lake

A = "wxprof0000000001"
ENGINES = ["reference", "sql", "incremental", "spark"]
#: The time of ingest the profile files are loaded at (their records' default updated_at).
NOW_US = int(dt.datetime(2024, 7, 1, tzinfo=dt.UTC).timestamp()) * 1_000_000


def ev(openid: str, day: str, **attrs: Any) -> dict[str, Any]:
    return {"appid": A, "openid": openid, "ts": f"2024-06-{day}T10:00:00+08:00", **attrs}


def prof(openid: str, **attrs: Any) -> dict[str, Any]:
    return {"appid": A, "openid": openid, **attrs}


EVENTS = [
    ev("u1", "01"),  # u1 is not new in June 10-12
    ev("u1", "11", province="广东", city="广州", gender=1, age=30, platform="ios"),
    ev("u2", "12", platform="android"),
    ev("u3", "10", city="深圳"),  # province 44 from the city
    ev("u4", "10", province="江苏"),
    ev("u5", "11", platform="ios"),
    ev("u6", "12"),
    ev("u7", "01", gender=2),  # not active in the window: its profile counts nowhere
]
PROFILES = [
    # every dimension of u1 comes from its events: the profile changes nothing
    prof("u1", gender=2, birth_date="1990-01-01", province="北京", city="北京"),
    # u2's events carry no region, gender or age: all four from the profile; 18 on 06-12
    prof("u2", gender="女", birth_date="20060611", province="浙江", city="杭州"),
    # u3: city from its event, gender from the profile, no birth date: age 未知
    prof("u3", gender="m", province="浙江省", city="杭州"),
    # u4: province from its event (江苏), city from the profile (广州): each independently
    prof("u4", city="广州"),
    # u5: the later record wins whole (no birth date in it: age 未知)
    prof("u5", gender=2, birth_year=1980, updated_at="2024-06-01T00:00:00+08:00"),
    prof("u5", gender=1, updated_at="2024-06-05T00:00:00+08:00"),
    prof("u7", gender=1, birth_date="1970-05-05", province="北京"),
]


def rows(*pairs: tuple[int, str, int]) -> list[dict[str, Any]]:
    return [{"id": i, "name": n, "value": v} for i, n, v in pairs]


ACTIVE = {
    "province": rows((0, "未知", 2), (44, "广东省", 2), (32, "江苏省", 1), (33, "浙江省", 1)),
    "city": rows((0, "未知", 2), (4401, "广州", 2), (3301, "杭州", 1), (4403, "深圳", 1)),
    "genders": rows((1, "男", 3), (0, "未知", 2), (2, "女", 1)),
    "platforms": rows((0, "未知", 3), (1, "iPhone", 2), (2, "Android", 1)),
    "devices": [{"name": "未知", "value": 6}],
    "ages": rows((0, "未知", 4), (2, "18-24岁", 1), (4, "30-39岁", 1)),
}
NEW = {
    "province": rows((0, "未知", 2), (32, "江苏省", 1), (33, "浙江省", 1), (44, "广东省", 1)),
    "city": rows((0, "未知", 2), (3301, "杭州", 1), (4401, "广州", 1), (4403, "深圳", 1)),
    "genders": rows((0, "未知", 2), (1, "男", 2), (2, "女", 1)),
    "platforms": rows((0, "未知", 3), (1, "iPhone", 1), (2, "Android", 1)),
    "devices": [{"name": "未知", "value": 5}],
    "ages": rows((0, "未知", 4), (2, "18-24岁", 1)),
}


def load_profiles(lake: Lake, records: list[dict[str, Any]], name: str = "p.ndjson") -> None:
    report = ingest_profiles_file(lake, write_ndjson(lake.root.parent / name, records), NOW_US)
    assert (report.accepted, report.rejected) == (len(records), 0), report.rejects


@pytest.fixture
def filled(lake: Lake) -> Lake:
    load(lake, EVENTS)
    load_profiles(lake, PROFILES)
    return lake


def answer(lake: Lake, engine: str | Engine, begin: str, end: str) -> dict[str, Any]:
    eng = get_engine(engine, lake) if isinstance(engine, str) else engine
    try:
        q = PortraitQuery(A, dt.date.fromisoformat(begin), dt.date.fromisoformat(end))
        return portrait(q, eng)
    finally:
        if isinstance(engine, str):
            eng.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_profiles_fill_exactly_the_gaps(filled: Lake, engine: str) -> None:
    body = answer(filled, engine, "2024-06-10", "2024-06-12")
    assert body == {"ref_date": "20240610-20240612", "visit_uv_new": NEW, "visit_uv": ACTIVE}


# Spark shares the sql engine's SQL for the age (engine/portrait_sql.py); its queries cost
# seconds, so the age's windows are checked on the other engines.
@pytest.mark.parametrize("engine", [e for e in ENGINES if e != "spark"])
def test_age_is_taken_on_the_windows_last_day(filled: Lake, engine: str) -> None:
    # u2 (born 2006-06-11) is 17 on 06-10 and 18 from 06-11 on; its event is on 06-12,
    # so windows ending 06-12 see it: 18. Only its profile gives it an age.
    def u2_age(begin: str, end: str) -> list[dict[str, Any]]:
        ages = answer(filled, engine, begin, end)["visit_uv"]["ages"]
        return [r for r in ages if r["id"] in (1, 2)]

    assert u2_age("2024-06-12", "2024-06-12") == rows((2, "18-24岁", 1))
    load(filled, [ev("u2", "10")], "late.ndjson")  # now active on 06-10 too
    assert u2_age("2024-06-10", "2024-06-10") == rows((1, "17岁以下", 1))
    assert u2_age("2024-06-09", "2024-06-10") == rows((1, "17岁以下", 1))
    assert u2_age("2024-06-10", "2024-06-11") == rows((2, "18-24岁", 1))


@pytest.mark.parametrize("engine", ENGINES)
def test_latest_record_wins_and_updates_restate_windows(filled: Lake, engine: str) -> None:
    eng = get_engine(engine, filled)  # one engine throughout: what it caches must follow
    before = answer(filled, eng, "2024-06-10", "2024-06-12")
    assert before["visit_uv"]["genders"] == ACTIVE["genders"]
    # An older record changes nothing; a newer one replaces the whole profile (u3 loses
    # its gender); at an equal updated_at the later batch wins (u4's city).
    load_profiles(
        filled,
        [
            prof("u5", gender=2, updated_at="2024-06-02T00:00:00+08:00"),
            prof("u3", province="浙江", updated_at="2024-07-01T12:00:00Z"),  # NOW + 12 h
        ],
        "update1.ndjson",
    )
    load_profiles(filled, [prof("u4", city="杭州")], "update2.ndjson")  # updated_at = NOW
    load_profiles(filled, [prof("u4", city="深圳")], "update3.ndjson")  # same time, later
    after = answer(filled, eng, "2024-06-10", "2024-06-12")["visit_uv"]
    eng.close()
    assert after["genders"] == rows((0, "未知", 3), (1, "男", 2), (2, "女", 1))
    assert after["city"] == rows(
        (0, "未知", 2), (4403, "深圳", 2), (3301, "杭州", 1), (4401, "广州", 1)
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_a_record_dated_far_ahead_cannot_pin_a_profile(filled: Lake, engine: str) -> None:
    """A record dated 9999 would stay the latest forever (issue 24): it is refused at
    ingest, so a later record still replaces u3's profile, on every engine alike."""
    pinned = [prof("u3", gender=2, updated_at="9999-01-01T00:00:00+08:00")]
    report = ingest_profiles_file(filled, write_ndjson(filled.root.parent / "pin.ndjson", pinned), NOW_US)  # fmt: skip
    assert (report.accepted, report.rejected) == (0, 1)
    assert [r.reason for r in report.rejects] == [
        "updated_at is more than a day after the time of ingest: 9999-01-01T00:00:00+08:00"
    ]
    load_profiles(filled, [prof("u3", updated_at="2024-07-01T12:00:00Z")], "later.ndjson")
    genders = answer(filled, engine, "2024-06-10", "2024-06-12")["visit_uv"]["genders"]
    assert genders == rows((0, "未知", 3), (1, "男", 2), (2, "女", 1))  # u3: no gender now


@pytest.mark.parametrize("engine", ["sql", "incremental"])
def test_windows_longer_than_the_histograms(filled: Lake, engine: str) -> None:
    # 529 days: the incremental store walks the window's day partitions (no histogram)
    long = answer(filled, engine, "2023-01-01", "2024-06-12")
    assert long == answer(filled, "reference", "2023-01-01", "2024-06-12")
    assert long["visit_uv"]["genders"] == rows((1, "男", 3), (0, "未知", 2), (2, "女", 2))


def test_generated_profiles_change_the_answers(tmp_path: Path) -> None:
    """Sanity for the agreement test: the generated profiles do fill gaps."""
    from tests.test_engines_agree import CONFIG
    from userportrait.synthetic.generate import write_profiles

    path = tmp_path / "p.ndjson"
    n = write_profiles(path, CONFIG)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == n > 1000
    assert {"birth_date", "birth_year", "updated_at", "city", "gender"} <= {
        k for r in records for k in r
    }


def test_small_batches_of_the_newest_day_keep_the_fill_exact(filled: Lake) -> None:
    """Batches of the newest day only (live flushes) change that day in place in the
    incremental store; users they add and profiles loaded between them still count."""
    eng = get_engine("incremental", filled)
    load_profiles(filled, [prof(f"n{i}", gender=2, city="杭州") for i in range(3)], "new.ndjson")
    batches = [
        [ev("n0", "12"), ev("u6", "12", gender=1)],
        [ev("n1", "12", city="广州"), ev("n0", "12", gender=1)],
        [ev("n2", "12", province="江苏")],
    ]
    for i, batch in enumerate(batches):
        load(filled, batch, f"flush{i}.ndjson")
        for begin in ("2024-06-12", "2024-06-10", "2024-05-01"):
            expected = answer(filled, "reference", begin, "2024-06-12")
            assert answer(filled, eng, begin, "2024-06-12") == expected, (i, begin)
    eng.close()
