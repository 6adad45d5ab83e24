"""Every engine equals the reference engine on generated data (ibis-style backend checks)."""

from __future__ import annotations

import datetime as dt
import random
from importlib import import_module
from pathlib import Path

import pytest

from userportrait.engine import ENGINES, get_engine
from userportrait.engine.base import Engine
from userportrait.ingest.pipeline import ingest_file
from userportrait.ingest.profiles import ingest_profiles_file
from userportrait.portrait.query import PortraitQuery
from userportrait.portrait.service import portrait
from userportrait.settings import Settings
from userportrait.store.lake import Lake
from userportrait.synthetic.generate import GeneratorConfig, write_events, write_profiles

# client_fields: some users send only model/brand/system or a user_agent (issue 17), so
# every engine is checked on device and platform derived at ingest.
CONFIG = GeneratorConfig(
    users=2500, days=40, end=dt.date(2026, 3, 31), apps=3, seed=11, client_fields=True
)
END = CONFIG.end


@pytest.fixture(scope="module")
def generated_lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    root = tmp_path_factory.mktemp("gen")
    src = root / "events.csv.gz"
    write_events(src, CONFIG)
    lake = Lake(Settings(data_dir=root / "data", duckdb_memory_limit_mb=512))
    report = ingest_file(lake, src)
    assert report.rejected == 0 and report.accepted > 20_000
    # Profiles (issue 17) for every app but the last, so both kinds of app are compared.
    profiles = root / "profiles.ndjson"
    write_profiles(profiles, CONFIG)
    lines = profiles.read_text("utf-8").splitlines(keepends=True)
    profiles.write_text("".join(x for x in lines if CONFIG.appids[-1] not in x), "utf-8")
    loaded = ingest_profiles_file(lake, profiles)
    assert loaded.rejected == 0 and loaded.accepted > 500
    return lake


WINDOWS = [
    (END, END),  # 1 day
    (END - dt.timedelta(days=6), END),  # 7 days
    (END - dt.timedelta(days=29), END),  # 30 days
    (END - dt.timedelta(days=20), END - dt.timedelta(days=10)),  # odd, in the middle
    (CONFIG.start - dt.timedelta(days=5), CONFIG.start + dt.timedelta(days=2)),  # before data
    (END - dt.timedelta(days=2), END + dt.timedelta(days=3)),  # past the end
]
FIXED_WINDOWS = list(WINDOWS)
# Random windows (profile ages change with the end day; birthdays fall inside windows).
_rng = random.Random(17)
WINDOWS += [
    (e - dt.timedelta(days=_rng.randrange(0, 45)), e)
    for e in (CONFIG.start + dt.timedelta(days=_rng.randrange(0, 45)) for _ in range(6))
]


# Spark answers for one appid here (each query is a Spark job: seconds, not milliseconds);
# tests/test_spark.py adds late events, duplicate ids and ties (tests/spark_support.py
# gives the spark cases their session).
CASES = [
    (name, appid)
    for name in sorted(set(ENGINES) - {"reference"})
    for appid in CONFIG.appids
    if name != "spark" or appid == CONFIG.appids[0]
]


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_every_engine_has_the_whole_interface(name: str) -> None:
    """``engine/base.Engine``'s members, ``data_version`` included (the cache calls it)."""
    module, cls = ENGINES[name].split(":")
    members = {m for m in vars(Engine) if not m.startswith("_")} | set(Engine.__annotations__)
    assert members == {"name", "run_portrait", "run_crosstab", "data_version", "close"}
    assert members <= set(dir(getattr(import_module(module), cls)))


@pytest.mark.parametrize(("engine", "appid"), CASES)
def test_engine_equals_reference(generated_lake: Lake, engine: str, appid: str) -> None:
    ref = get_engine("reference", generated_lake)
    eng = get_engine(engine, generated_lake)
    try:
        # Spark: the fixed windows only (each is a Spark job of seconds).
        for begin, end in FIXED_WINDOWS if engine == "spark" else WINDOWS:
            q = PortraitQuery(appid, begin, end)
            expected = portrait(q, ref)
            assert portrait(q, eng) == expected, (engine, appid, begin, end)
    finally:
        eng.close()
        ref.close()


def test_generated_data_exercises_the_rules(generated_lake: Lake, tmp_path: Path) -> None:
    q = PortraitQuery(CONFIG.appids[0], END - dt.timedelta(days=29), END)
    body = portrait(q, get_engine("duckdb", generated_lake))
    active, new = body["visit_uv"], body["visit_uv_new"]
    users = sum(r["value"] for r in active["genders"])
    assert 0 < sum(r["value"] for r in new["genders"]) < users
    for dim in ("province", "city", "genders", "platforms", "ages"):
        assert sum(r["value"] for r in active[dim]) == users
        assert any(r["id"] == 0 for r in active[dim]), dim  # some 未知
    assert any(r["id"] == 6 for r in active["platforms"])  # 其他
    assert any(r["id"] == 99 for r in active["province"])  # 其他 (abroad)
    assert any(r["name"] == "未知" for r in active["devices"])
    devices = {r["name"] for r in active["devices"]}
    # Normalised from model codes, identifiers and UAs (portrait/devices.py).
    assert {"iPhone 13", "Redmi K40", "Samsung Galaxy S21 5G"} <= devices


# Issue 17: the same checks on events that carry an ip instead of province/city (NDJSON:
# the text path, with spaces, IPv4-mapped, IPv6 and unparseable addresses among them).
IP_CONFIG = GeneratorConfig(users=1200, days=35, end=END, apps=2, seed=17, ips=True)


@pytest.fixture(scope="module")
def ip_lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    root = tmp_path_factory.mktemp("gen-ip")
    src = root / "events.ndjson"
    write_events(src, IP_CONFIG)
    lake = Lake(Settings(data_dir=root / "data", duckdb_memory_limit_mb=512))
    report = ingest_file(lake, src)
    assert report.rejected == 0 and report.accepted > 10_000
    return lake


@pytest.mark.parametrize("engine", sorted(set(ENGINES) - {"reference"}))
def test_engine_equals_reference_on_ip_events(ip_lake: Lake, engine: str) -> None:
    ref = get_engine("reference", ip_lake)
    eng = get_engine(engine, ip_lake)
    appids = IP_CONFIG.appids if engine != "spark" else IP_CONFIG.appids[:1]
    try:
        for appid in appids:
            for begin, end in WINDOWS[:4]:
                q = PortraitQuery(appid, begin, end)
                assert portrait(q, eng) == portrait(q, ref), (engine, appid, begin, end)
    finally:
        eng.close()
        ref.close()


def test_generated_ips_give_a_sensible_portrait(ip_lake: Lake) -> None:
    q = PortraitQuery(IP_CONFIG.appids[0], END - dt.timedelta(days=29), END)
    active = portrait(q, get_engine("duckdb", ip_lake))["visit_uv"]
    provinces = {r["id"]: r["value"] for r in active["province"]}
    users = sum(provinces.values())
    assert active["province"][0]["id"] == 44  # the generator's largest province
    assert {0, 81, 99} <= set(provinces)  # absent (private, IPv6, none), Hong Kong, abroad
    assert provinces[0] < users * 0.05 and provinces[99] < users * 0.02
    cities = {r["id"] for r in active["city"]}
    assert {4401, 1101, 3101} <= cities
