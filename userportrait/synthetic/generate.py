"""A synthetic visit-event generator for tests, the benchmark and the demo.

Realistic enough to exercise every rule: provinces and cities weighted by population
(regions.population()), phones of the last three years' market, users
who started before the window, missing and unrecognised attributes, every accepted raw
form of each field, users who move city, several appids. Vectorised with numpy, one day
at a time, so tens of millions of events stay within a few hundred MB.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from userportrait.portrait import regions
from userportrait.portrait.query import TZ


def _weights(w: list[float]) -> np.ndarray[Any, np.dtype[np.float64]]:
    a = np.asarray(w, dtype=np.float64)
    out: np.ndarray[Any, np.dtype[np.float64]] = a / a.sum()
    return out


# How many of a region's residents a mini program reaches, against the mainland's (1.0):
# WeChat is one app among several in Hong Kong and Macau and rare in Taiwan.
_REACH = {81: 0.15, 82: 0.3, 71: 0.01}
# Per resident, the first-tier cities have more phones and use more services through mini
# programs: a guess (a demo weight, not a measurement) that puts 北上广深 first, as an
# app's portrait usually shows them, ahead of 重庆's larger but largely rural population.
_CITY_REACH = {1101: 2.0, 3101: 2.0, 4401: 2.0, 4403: 2.0}
# Phones of the last three years' Chinese market (Apple, Huawei, vivo, OPPO, Honor, Xiaomi
# lead with 14-18% each), as (the device name, the model the client reports, weight).
# The name is what portrait/devices.py makes of the model (tests/portrait/test_devices.py
# checks it), so the ``device`` the generator sends and the ``model`` a client sends give
# one row. HarmonyOS 4 Huawei phones run WeChat's Android app; ``ohos`` is HarmonyOS NEXT.
_PHONES: dict[str, list[tuple[str, str | None, float]]] = {
    "ios": [
        ("iPhone 16 Pro Max", "iPhone 16 Pro Max<iPhone17,2>", 10), ("iPhone 17 Pro Max", "iPhone 17 Pro Max<iPhone18,2>", 9),
        ("iPhone 16 Pro", "iPhone 16 Pro<iPhone17,1>", 8), ("iPhone 16", "iPhone 16<iPhone17,3>", 7),
        ("iPhone 17 Pro", "iPhone 17 Pro<iPhone18,1>", 7), ("iPhone 17", "iPhone 17<iPhone18,3>", 7),
        ("iPhone 15 Pro Max", "iPhone 15 Pro Max<iPhone16,2>", 6), ("iPhone 15", "iPhone 15<iPhone15,4>", 5),
        ("iPhone 15 Pro", "iPhone 15 Pro<iPhone16,1>", 4), ("iPhone 14 Pro Max", "iPhone 14 Pro Max<iPhone15,3>", 3),
        ("iPhone 13", "iPhone 13<iPhone14,5>", 3), ("iPhone 14", "iPhone 14<iPhone14,7>", 2),
        ("iPhone 16 Plus", "iPhone 16 Plus<iPhone17,4>", 2), ("iPhone Air", "iPhone Air<iPhone18,4>", 2),
        ("iPhone 16e", "iPhone 16e<iPhone17,5>", 1), ('iPad Air 6 11" WiFi', "iPad14,8", 1),
    ],
    "android": [
        ("Huawei Mate 60 Pro", "ALN-AL00", 8), ("Huawei Mate 60", "BRA-AL00", 5),
        ("Huawei Pura 70 Pro", "HBN-AL00", 4), ("Huawei Pura 70", "ADY-AL00", 3),
        ("Huawei Nova 12", "BLK-AL00", 3), ("Huawei Nova 12 Pro", "ADA-AL00", 2),
        ("Huawei Enjoy 50 Pro", "CTR-AL00", 2),
        ("Vivo X100", "V2309A", 5), ("Vivo X200 Pro", "V2405A", 4), ("Vivo S19", "V2364A", 4),
        ("Vivo X100 Pro", "V2324A", 3), ("Vivo Y200 5G", "V2343A", 3), ("Vivo S18e", "V2334A", 2),
        ("Vivo Y35 5G", "V2230A", 2), ("iQOO 13", "V2408A", 2), ("iQOO 12 Pro", "V2329A", 1),
        ("OPPO Reno 12", "PJV110", 5), ("OPPO Reno 13", "PKM110", 4), ("OPPO Reno 11", "PJH110", 3),
        ("OPPO Find X8", "PKB110", 3), ("OPPO Find X8 Pro", "PKC110", 2), ("OPPO Find X7", "PHZ110", 2),
        ("OPPO K12 5G", "PJR110", 1),
        ("Honor X50", "ALI-AN00", 5), ("Honor 200", "ELI-AN00", 3), ("Honor 100 Pro", "MAA-AN10", 3),
        ("Honor Magic 6 Pro", "BVL-AN16", 3), ("Honor Magic 7 Pro", "PTP-AN10", 2),
        ("Honor Play 40 Plus", "RKY-AN00", 2), ("Honor Magic V3", "FCP-AN10", 1),
        ("Xiaomi 15", "24129PN74C", 4), ("Xiaomi 14", "23127PN0CC", 4), ("Xiaomi 14 Ultra", "24031PN0DC", 1),
        ("Xiaomi 13", "2211133C", 2), ("Xiaomi Civi 4 Pro", "24053PY09C", 1),
        ("Redmi K70", "23113RKC6C", 4), ("Redmi Note 13 5G", "2312DRAABC", 4),
        ("Redmi Turbo 3", "24069RA21C", 3), ("Redmi K80 Pro", "24122RKC7C", 2),
        ("Redmi K70 Pro", "23117RK66C", 2), ("Redmi Note 12T", "23049RAD8C", 2),
        ("OnePlus 13", "PJZ110", 2), ("OnePlus Ace 3", "PJE110", 2), ("OnePlus 12", "PJD110", 1),
        ("Samsung Galaxy S24", "SM-S9210", 1), ("Realme GT 5 Pro", "RMX3888", 1),
    ],
    "ohos": [
        ("Huawei Mate 70 Pro", "PLR-AL00", 5), ("Huawei Mate 60 Pro", "ALN-AL00", 4),
        ("Huawei Mate 70 5G", "CLS-AL00", 3), ("Huawei Pura 70 Pro", "HBN-AL00", 3),
        ("Huawei Nova 12 Pro", "ADA-AL00", 2), ("Huawei Pura 70 Ultra", "HBP-AL00", 1),
        ("Huawei Mate 70 Pro+ 5G", "PLA-AL10", 1),
    ],
    "windows": [("PC", None, 3), ("Surface Pro 9", None, 1)],
    "mac": [("MacBookPro18,3", None, 2), ("MacBookAir10,1", None, 1)],
    "devtools": [("devtools", None, 1)],
}  # fmt: skip
_DEVICES = {p: [name for name, _, _ in rows] for p, rows in _PHONES.items()}
_DEVICE_WEIGHTS = {p: _weights([w for _, _, w in rows]) for p, rows in _PHONES.items()}
_PLATFORM_FORMS = {
    "ios": ["ios", "iOS", "iPhone"], "android": ["android", "Android"],
    "ohos": ["ohos", "HarmonyOS"], "windows": ["windows", "Windows"],
    "mac": ["mac", "macOS"], "devtools": ["devtools"],
}  # fmt: skip
_PLATFORM_WEIGHTS = {"ios": 0.36, "android": 0.55, "ohos": 0.05, "windows": 0.02,
                     "mac": 0.015, "devtools": 0.005}  # fmt: skip
# What clients that send wx.getSystemInfoSync() fields or only a User-Agent report
# (docs/ingest.md "Device and platform from the client"): real model, system and UA strings, per platform.
_MODELS = {
    "ios": ["iPhone 13<iPhone14,5>", "iPhone14,5", "iPhone X (GSM+CDMA)<iPhone10,3>",
            "iPhone 15 Pro<iPhone16,1>", "iPhone12,8"],
    "android": ["M2012K11AC", "22081212C", "SM-G9910", "PCT-AL10", "V2049A", "PGKM10",
                "ANA-AN00"],
    "ohos": ["ALN-AL00", "NOH-AN00"], "windows": ["microsoft"], "mac": ["MacBookPro18,1"],
    "devtools": ["iPhone 12/13 (Pro)"],
}  # fmt: skip
_SYSTEMS = {
    "ios": "iOS 17.0", "android": "Android 13", "ohos": "HarmonyOS 4.0.0",
    "windows": "Windows 10 x64", "mac": "macOS 14.1", "devtools": "iOS 10.0.1",
}  # fmt: skip
_BRANDS = {"ios": "iPhone", "android": "Xiaomi", "ohos": "HUAWEI", "windows": "microsoft",
           "mac": "Apple", "devtools": "devtools"}  # fmt: skip
_WECHAT = "MicroMessenger/8.0.42.2460(0x28002A37) WeChat/arm64 Weixin NetType/WIFI Language/zh_CN"
_USER_AGENTS = {
    "ios": ["Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.42(0x18002a2f) "
            "NetType/WIFI Language/zh_CN"],
    "android": [f"Mozilla/5.0 (Linux; Android 13; {m} Build/TKQ1.220829.002; wv) "
                "AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/111.0.5563.116 "
                f"Mobile Safari/537.36 XWEB/5235 MMWEBSDK/20230805 MMWEBID/{w} {_WECHAT} "
                "ABI/arm64 MiniProgramEnv/android"
                for m in ("M2012K11AC", "22081212C", "SM-G9910") for w in (6281, 1042)],
    "ohos": ["Mozilla/5.0 (Phone; OpenHarmony 5.0) AppleWebKit/537.36 (KHTML, like Gecko) "
             "Chrome/114.0.0.0 Safari/537.36 ArkWeb/4.1.6.1 Mobile"],
    "windows": ["Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
                "Gecko) Chrome/132.0.0.0 Safari/537.36 MicroMessenger/7.0.20.1781(0x6700143B) "
                "NetType/WIFI MiniProgramEnv/Windows WindowsWechat/WMPF"],
    "mac": ["Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like "
            "Gecko) Chrome/107.0.0.0 Safari/537.36 MicroMessenger/6.8.0(0x16080000) "
            "NetType/WIFI MiniProgramEnv/Mac MacWechat/WMPF MacWechat/3.8.8(0x13080812)"],
    "devtools": ["Mozilla/5.0 (iPhone; CPU iPhone OS 13_2_3 like Mac OS X) AppleWebKit/605.1.15 "
                 "(KHTML, like Gecko) Version/13.0.3 Mobile/15E148 Safari/604.1 wechatdevtools/"
                 "1.06.2401020 MicroMessenger/8.0.5 Language/zh_CN webview/"],
}  # fmt: skip
_GENDER_FORMS = {1: ["1", "1", "1", "male", "m", "男"], 2: ["2", "2", "2", "female", "f", "女"]}


@dataclass(frozen=True, slots=True)
class GeneratorConfig:
    users: int = 10_000
    days: int = 40
    end: dt.date = dt.date(2026, 1, 31)
    apps: int = 3
    visits_per_user: float = 13.0
    seed: int = 7
    event_ids: bool = False
    #: Some users' clients send model/brand/system or only a user_agent.
    client_fields: bool = False
    ips: bool = False  # an ``ip`` column instead of province/city

    @property
    def start(self) -> dt.date:
        return self.end - dt.timedelta(days=self.days - 1)

    @property
    def appids(self) -> list[str]:
        return [f"wx{i + 1:016x}" for i in range(self.apps)]


def _zipf(n: int, s: float = 1.0) -> np.ndarray[Any, np.dtype[np.float64]]:
    w = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** s
    out: np.ndarray[Any, np.dtype[np.float64]] = w / w.sum()
    return out


class _Population:
    """Per-user attributes, drawn once."""

    def __setattr__(self, name: str, value: Any) -> None:
        # Each per-user integer array in the smallest signed type that holds it, as it is
        # drawn: the same values, a third of the memory (30 M users: 1 GB, not 2.7 GB).
        super().__setattr__(name, _compact(value))

    def __init__(self, cfg: GeneratorConfig, rng: np.random.Generator) -> None:
        n = cfg.users
        self.n = n
        self.app = rng.choice(cfg.apps, size=n, p=_zipf(cfg.apps, 0.8))
        people = regions.population()
        self.provinces = [p for p, _ in regions.all_provinces()]
        cities = regions.all_cities()
        self.cities_of = {p: [c for c, _, cp in cities if cp == p] for p in self.provinces}
        users_of = {
            c: people[c] * _CITY_REACH.get(c, 1.0) for cs in self.cities_of.values() for c in cs
        }
        self.city_weights = {
            p: _weights([users_of[c] for c in cs]) for p, cs in self.cities_of.items()
        }
        # The province's figure plus what its first-tier city adds.
        extra = {p: sum(users_of[c] - people[c] for c in cs) for p, cs in self.cities_of.items()}
        weights = _weights([(people[p] + extra[p]) * _REACH.get(p, 1.0) for p in self.provinces])
        self.province = rng.choice(len(self.provinces), size=n, p=weights)
        self.city = self._pick_city(self.province, rng)
        # 6% move to another city (often another province) on a random day.
        self.moves = rng.random(n) < 0.06
        self.move_day = rng.integers(0, cfg.days, size=n)
        self.province2 = np.where(
            rng.random(n) < 0.5,
            self.province,
            rng.choice(len(self.provinces), size=n, p=weights),
        )
        self.city2 = self._pick_city(self.province2, rng)
        self.gender = rng.choice([0, 1, 2], size=n, p=[0.08, 0.49, 0.43])
        names = list(_PLATFORM_WEIGHTS)
        self.platform = rng.choice(len(names), size=n, p=list(_PLATFORM_WEIGHTS.values()))
        self.platform_names = names
        self.device = (
            np.array(
                [
                    rng.choice(len(_DEVICES[names[p]]), p=_DEVICE_WEIGHTS[names[p]])
                    for p in self.platform
                ]
            )
            if n <= 200_000
            else self._vector_devices(rng)
        )
        self.no_device = rng.random(n) < 0.06  # clients that never report a model
        self.no_platform = rng.random(n) < 0.03
        ages = np.clip(rng.normal(31, 11, size=n).round(), 8, 80).astype(np.int16)
        self.age = np.where(rng.random(n) < 0.18, -1, ages)
        if cfg.ips:
            # Its own random stream: the same seed gives the same events with or without ips.
            self.ip_texts = _user_ips(self, np.random.default_rng([cfg.seed, 17]))
        # 45% of users started before the data set (their first visit is on day 0 or 1).
        early = rng.random(n) < 0.45
        self.start = np.where(early, rng.integers(0, 2, size=n), rng.integers(0, cfg.days, size=n))
        life = cfg.days - self.start
        per_day = cfg.visits_per_user / 1.25 / np.maximum(life, 1)
        self.p = np.clip(per_day * rng.gamma(2.0, 0.5, size=n), 0.0, 1.0)

    def _pick_city(
        self, province: np.ndarray[Any, Any], rng: np.random.Generator
    ) -> np.ndarray[Any, Any]:
        out = np.zeros(len(province), dtype=np.int64)
        for i, p in enumerate(self.provinces):
            mask = province == i
            k = len(self.cities_of[p])
            if k and mask.any():
                out[mask] = rng.choice(k, size=int(mask.sum()), p=self.city_weights[p])
        return out

    def _vector_devices(self, rng: np.random.Generator) -> np.ndarray[Any, Any]:
        out = np.zeros(self.n, dtype=np.int64)
        for i, name in enumerate(self.platform_names):
            mask = self.platform == i
            k = len(_DEVICES[name])
            out[mask] = rng.choice(k, size=int(mask.sum()), p=_DEVICE_WEIGHTS[name])
        return out


def _compact(value: Any) -> Any:
    """An int64 array as int16 or int32 when its values fit (anything else unchanged)."""
    if not isinstance(value, np.ndarray) or value.dtype != np.int64 or not value.size:
        return value
    lo, hi = int(value.min()), int(value.max())
    for dtype in (np.int16, np.int32):
        if np.iinfo(dtype).min <= lo and hi <= np.iinfo(dtype).max:
            return value.astype(dtype)
    return value


def _openids(users: np.ndarray[Any, Any]) -> pa.Array:
    """``f"o{u:09d}"`` of each user, built as one Arrow buffer (a Python string per
    event would cost ~70 bytes each: 1 GB for a day of 15 M events)."""
    m = len(users)
    if m and int(users.max()) >= 10**9:  # wider than 9 digits: the general way
        return pa.array([f"o{u:09d}" for u in users.tolist()], pa.string())
    text = np.empty((m, 10), dtype=np.uint8)
    text[:, 0] = ord("o")
    rest = users.astype(np.int64)
    for k in range(9, 0, -1):
        text[:, k] = rest % 10 + ord("0")
        rest //= 10
    offsets = np.arange(0, 10 * m + 1, 10, dtype=np.int32)
    return pa.StringArray.from_buffers(m, pa.py_buffer(offsets), pa.py_buffer(text))


class _Dictionary:
    """Strings -> dictionary indices, so per-event columns are int arrays."""

    def __init__(self) -> None:
        self.values: list[str] = []
        self.index: dict[str, int] = {}

    def add(self, value: str) -> int:
        if value not in self.index:
            self.index[value] = len(self.values)
            self.values.append(value)
        return self.index[value]

    def array(self, idx: np.ndarray[Any, Any], missing: np.ndarray[Any, Any]) -> pa.Array:
        indices = pa.array(idx.astype(np.int32), mask=missing)
        return pa.DictionaryArray.from_arrays(indices, pa.array(self.values, pa.string()))


def _region_forms(code: int, names: tuple[str, str, str]) -> list[str]:
    """Every raw form of a region the generator emits: full, full, short, pinyin, codes."""
    name, short, pinyin = names
    return [name, name, short, pinyin, str(code), str(code).ljust(6, "0")]


def generate_days(cfg: GeneratorConfig, on_day: Callable[[], None] | None = None) -> Any:
    """Yield one Arrow table of events per day, oldest first."""
    rng = np.random.default_rng(cfg.seed)
    pop = _Population(cfg, rng)
    info = regions.region_info()
    prov_dict, city_dict, plat_dict, dev_dict, gen_dict = (_Dictionary() for _ in range(5))
    prov_forms = np.array(
        [[prov_dict.add(f) for f in _region_forms(p, info[p])] for p in pop.provinces]
    )
    unknown_province = prov_dict.add("海外")
    city_codes = sorted({c for cs in pop.cities_of.values() for c in cs})
    city_forms = {c: [city_dict.add(f) for f in _region_forms(c, info[c])] for c in city_codes}
    max_c = max(len(v) for v in pop.cities_of.values())
    city_table = np.zeros((len(pop.provinces), max_c, 6), dtype=np.int64)
    for i, p in enumerate(pop.provinces):
        for j, c in enumerate(pop.cities_of[p]):
            city_table[i, j] = city_forms[c]
    plat_forms = [[plat_dict.add(f) for f in _PLATFORM_FORMS[n]] for n in pop.platform_names]
    odd_platform = plat_dict.add("PlayStation")
    dev_table = [[dev_dict.add(d) for d in _DEVICES[n]] for n in pop.platform_names]
    gen_forms = {g: [gen_dict.add(f) for f in forms] for g, forms in _GENDER_FORMS.items()}
    seq = 0
    for d in range(cfg.days):
        day = cfg.start + dt.timedelta(days=d)
        active = (pop.start <= d) & ((rng.random(pop.n) < pop.p) | (pop.start == d))
        users = np.flatnonzero(active)
        users = np.repeat(users, 1 + rng.poisson(0.25, size=len(users)))
        m = len(users)
        midnight = dt.datetime(day.year, day.month, day.day, tzinfo=TZ)
        base_ms = int(midnight.timestamp() * 1000)
        ts = base_ms + rng.integers(0, 86_400_000, size=m)
        moved = pop.moves[users] & (pop.move_day[users] <= d)
        prov = np.where(moved, pop.province2[users], pop.province[users])
        city = np.where(moved, pop.city2[users], pop.city[users])
        form = rng.choice(6, size=m, p=[0.45, 0.1, 0.2, 0.15, 0.05, 0.05])
        no_region = rng.random(m) < 0.07
        prov_idx = prov_forms[prov, form]
        prov_idx = np.where(rng.random(m) < 0.004, unknown_province, prov_idx)
        city_idx = city_table[prov, city, rng.choice(6, size=m, p=[0.4, 0.25, 0.2, 0.1, 0.05, 0.0])]
        no_city = no_region | (rng.random(m) < 0.03)
        g = pop.gender[users]
        gform = rng.integers(0, 6, size=m)
        gen_idx = np.where(g == 1, np.array(gen_forms[1])[gform], np.array(gen_forms[2])[gform])
        no_gender = (g == 0) | (rng.random(m) < 0.03)
        plat = pop.platform[users]
        pform = rng.integers(0, 3, size=m)
        plat_idx = (
            np.array(
                [plat_forms[p][f % len(plat_forms[p])] for p, f in zip(plat, pform, strict=True)]
            )
            if m < 50_000
            else _vector_pick(plat_forms, plat, pform)
        )
        plat_idx = np.where(rng.random(m) < 0.002, odd_platform, plat_idx)
        no_platform = pop.no_platform[users] | (rng.random(m) < 0.02)
        dev_idx = _vector_pick(dev_table, plat, pop.device[users])
        no_device = pop.no_device[users] | (rng.random(m) < 0.03)
        age = pop.age[users]
        no_age = (age < 0) | (rng.random(m) < 0.04)
        columns: dict[str, pa.Array] = {
            "appid": pa.DictionaryArray.from_arrays(
                pa.array(pop.app[users].astype(np.int32)), pa.array(cfg.appids)
            ),
            "openid": _openids(users),
            "ts": pa.array(ts, pa.timestamp("ms", tz="UTC")),
        }
        if cfg.event_ids:
            columns["event_id"] = pa.array([f"e{seq + i:012d}" for i in range(m)], pa.string())
            seq += m
        if cfg.ips:
            # The home address, or the second one after a move; 7% send no ip.
            ip_idx = np.where(moved, users + pop.n, users)
            columns["ip"] = pa.DictionaryArray.from_arrays(
                pa.array(ip_idx.astype(np.int32), mask=no_region), pop.ip_texts
            )
        else:
            columns["province"] = prov_dict.array(prov_idx, no_region)
            columns["city"] = city_dict.array(city_idx, no_city)
        columns.update(
            {
                "gender": gen_dict.array(gen_idx, no_gender),
                "platform": plat_dict.array(plat_idx, no_platform),
                "device": dev_dict.array(dev_idx, no_device),
                "age": pa.array(age.astype(np.int16), mask=no_age),
            }
        )
        if cfg.client_fields:
            columns.update(_client_columns(cfg, d, users, plat, columns))
        order = np.argsort(ts, kind="stable")
        table = pa.table(columns).take(pa.array(order))
        if on_day:
            on_day()
        yield table


def _client_columns(
    cfg: GeneratorConfig,
    day: int,
    users: np.ndarray[Any, Any],
    plat: np.ndarray[Any, Any],
    columns: dict[str, pa.Array],
) -> dict[str, pa.Array]:
    """A quarter of users send getSystemInfo fields, a sixth only a UA, instead of the
    device and platform (their own random stream: the other columns stay as without)."""
    rng = np.random.default_rng([cfg.seed, day, 17])
    kind = (users * 2654435761 % 12).astype(np.int64)  # per user: 0-2 fields, 3-4 UA
    info, ua_only = kind < 3, (kind >= 3) & (kind < 5)
    names = list(_PLATFORM_WEIGHTS)
    pick = users % 7  # a user keeps one phone
    models = [
        _MODELS[names[p]][k % len(_MODELS[names[p]])] for p, k in zip(plat, pick, strict=True)
    ]
    agents = [
        _USER_AGENTS[names[p]][k % len(_USER_AGENTS[names[p]])]
        for p, k in zip(plat, pick, strict=True)
    ]
    no_system = rng.random(len(users)) < 0.05
    out = {
        "model": pa.array(models, pa.string(), mask=~info),
        "brand": pa.array([_BRANDS[names[p]] for p in plat], pa.string(), mask=~info),
        "system": pa.array([_SYSTEMS[names[p]] for p in plat], pa.string(), mask=~info | no_system),
        "user_agent": pa.array(agents, pa.string(), mask=~ua_only),
    }
    drop = pa.array(info | ua_only)
    for name in ("device", "platform"):
        out[name] = pc.if_else(drop, pa.scalar(None, pa.string()), columns[name].cast(pa.string()))
    return out


#: Addresses some users send instead of a Chinese one: abroad (Google, Cloudflare DNS),
#: private, loopback, IPv6 (no region in the shipped database), unparseable.
_ODD_IPS = ["8.8.8.8", "1.1.1.1", "192.168.1.10", "10.0.0.1", "127.0.0.1",
            "240e:3b7:3272:d8d0::1", "::1", "not-an-ip"]  # fmt: skip


def _user_ips(pop: _Population, rng: np.random.Generator) -> pa.Array:
    """Two addresses per user (home, after a move), from real prefixes of their city.

    Prefixes come from the shipped ip2region database: a /24 whose region is the user's
    city (else their province), a random host in it. 2% of users have an odd address
    (``_ODD_IPS``), 1% the IPv4-mapped IPv6 form, 1% surrounding spaces.
    """
    from userportrait.portrait import ipregion

    db = ipregion.load_db(ipregion.shipped_db())
    ends = np.append(db.starts[1:] - 1, (1 << 32) - 1)
    lo, hi = (db.starts + 255) >> 8, ends >> 8  # the /24 keys of each segment
    usable = (hi >= lo) & (db.province > 0) & (db.province != regions.OTHER_PROVINCE)
    pools = {
        "city": _ip_pools(db.city[usable], lo[usable], hi[usable]),
        "province": _ip_pools(db.province[usable], lo[usable], hi[usable]),
    }
    codes = np.full((len(pop.provinces), max(len(c) for c in pop.cities_of.values())), -1)
    for i, p in enumerate(pop.provinces):
        codes[i, : len(pop.cities_of[p])] = pop.cities_of[p]
    texts: list[str] = []
    for province, city in ((pop.province, pop.city), (pop.province2, pop.city2)):
        keys = np.zeros(pop.n, dtype=np.int64)
        wanted = {"city": codes[province, city], "province": np.array(pop.provinces)[province]}
        todo = np.ones(pop.n, dtype=bool)
        for level in ("city", "province"):
            for code in np.unique(wanted[level][todo]).tolist():
                if code not in pools[level]:
                    continue
                who = np.flatnonzero(todo & (wanted[level] == code))
                first, count, weight = pools[level][code]
                seg = rng.choice(len(count), size=len(who), p=weight)
                keys[who] = first[seg] + rng.integers(0, 1 << 30, size=len(who)) % count[seg]
                todo[who] = False
        host = rng.integers(1, 255, size=pop.n)
        text = [
            f"{k >> 16}.{(k >> 8) & 255}.{k & 255}.{h}"
            for k, h in zip(keys.tolist(), host.tolist(), strict=True)
        ]
        form = rng.random(pop.n)
        odd = rng.integers(0, len(_ODD_IPS), size=pop.n)
        for i in np.flatnonzero(form < 0.04).tolist():
            if form[i] < 0.02:
                text[i] = _ODD_IPS[odd[i]]
            else:
                text[i] = f"::ffff:{text[i]}" if form[i] < 0.03 else f" {text[i]} "
        texts.extend(text)
    return pa.array(texts, pa.string())


def _ip_pools(
    region: np.ndarray[Any, Any], lo: np.ndarray[Any, Any], hi: np.ndarray[Any, Any]
) -> dict[int, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]]:
    """region id -> (first /24 key, /24 count, pick weight) of its segments."""
    order = np.argsort(region, kind="stable")
    region, lo, hi = region[order], lo[order], hi[order]
    ids, starts = np.unique(region, return_index=True)
    out = {}
    for rid, a, b in zip(
        ids.tolist(), starts.tolist(), [*starts[1:].tolist(), len(region)], strict=True
    ):
        if rid < 0:
            continue
        count = hi[a:b] - lo[a:b] + 1
        out[rid] = (lo[a:b], count, count / count.sum())
    return out


def _vector_pick(
    table: list[list[int]], group: np.ndarray[Any, Any], choice: np.ndarray[Any, Any]
) -> np.ndarray[Any, Any]:
    width = max(len(r) for r in table)
    dense = np.array([r + [r[0]] * (width - len(r)) for r in table])
    lengths = np.array([len(r) for r in table])
    picked: np.ndarray[Any, Any] = dense[group, choice % lengths[group]]
    return picked


def write_events(path: Path, cfg: GeneratorConfig, on_day: Callable[[], None] | None = None) -> int:
    """Write the events to ``path`` (format from its suffix); returns the event count."""
    suffixes = [s.lower() for s in path.suffixes]
    gz = bool(suffixes) and suffixes[-1] == ".gz"
    kind = suffixes[-2] if gz and len(suffixes) > 1 else (suffixes[-1] if suffixes else "")
    if kind not in (".parquet", ".csv", ".ndjson", ".jsonl", ".json"):
        raise ValueError(f"{path}: use a .parquet, .csv or .ndjson file name (optionally .gz)")
    if kind == ".parquet" and gz:
        raise ValueError(f"{path}: Parquet is compressed already; drop .gz")
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == ".parquet":
        return _write_parquet(path, cfg, on_day)
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "events.parquet"
        count = _write_parquet(staged, cfg, on_day)
        _convert_text(staged, path, "csv" if kind == ".csv" else "json", gz)
    return count


#: Rows per row group of a generated Parquet file, and per chunk the writer casts.
ROW_GROUP = 1 << 20


def _write_parquet(path: Path, cfg: GeneratorConfig, on_day: Callable[[], None] | None) -> int:
    """One day at a time, and each day one row group at a time: the dictionary columns are
    cast to plain strings a chunk at a time (a whole day's would hold ~80 bytes per event
    more at once)."""
    count = 0
    writer: pq.ParquetWriter | None = None
    try:
        for table in generate_days(cfg, on_day):
            schema = _plain_schema(table.schema)
            if writer is None:
                writer = pq.ParquetWriter(path, schema, compression="zstd")
            for start in range(0, table.num_rows, ROW_GROUP):
                writer.write_table(table.slice(start, ROW_GROUP).cast(schema), ROW_GROUP)
            count += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    return count


def _plain_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema(
        [
            pa.field(f.name, f.type.value_type if pa.types.is_dictionary(f.type) else f.type)
            for f in schema
        ]
    )


def _convert_text(src: Path, dst: Path, fmt: str, gz: bool) -> None:
    """Parquet -> CSV/NDJSON with ts in all its text forms (RFC 3339 +08:00, Z, epoch ms)."""
    import duckdb

    con = duckdb.connect(config={"threads": 2, "memory_limit": "1GB"})
    try:
        con.execute("SET TimeZone = 'Asia/Shanghai'")
        ts_text = (
            "CASE hash(openid, ts) % 4 "
            "WHEN 0 THEN strftime(ts, '%Y-%m-%dT%H:%M:%S.%g+08:00') "
            "WHEN 1 THEN strftime(timezone('UTC', ts), '%Y-%m-%dT%H:%M:%S.%gZ') "
            "WHEN 2 THEN CAST(epoch_ms(ts) AS VARCHAR) "
            "ELSE strftime(ts, '%Y-%m-%d %H:%M:%S.%g') END"
        )
        cols = [
            r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet('{src}')").fetchall()
        ]
        select = ", ".join(f"{ts_text} AS ts" if c == "ts" else c for c in cols)
        options = f"FORMAT {fmt}" + (", COMPRESSION gzip" if gz else "")
        con.execute(f"COPY (SELECT {select} FROM read_parquet('{src}')) TO '{dst}' ({options})")
    finally:
        con.close()


def write_profiles(path: Path, cfg: GeneratorConfig, share: float = 0.5) -> int:
    """Profile records for ``share`` of the users of ``cfg``'s events.

    Values agree with the user's events most of the time and differ sometimes (the app
    knows another city); some users get two records (a later one wins), some only a
    ``birth_year``, some fields are missing. Written as NDJSON (``.gz``: gzip);
    ``updated_at`` falls inside the events' days.
    """
    import gzip
    import json

    pop = _Population(cfg, np.random.default_rng(cfg.seed))
    rng = np.random.default_rng(cfg.seed + 1)
    info = regions.region_info()
    base = dt.datetime(cfg.start.year, cfg.start.month, cfg.start.day, tzinfo=TZ)
    records: list[dict[str, Any]] = []
    for u in np.flatnonzero(rng.random(pop.n) < share).tolist():
        for _ in range(1 + int(rng.random() < 0.15)):
            rec: dict[str, Any] = {"appid": cfg.appids[pop.app[u]], "openid": f"o{u:09d}"}
            if rng.random() < 0.9:
                at = base + dt.timedelta(seconds=int(rng.integers(0, cfg.days * 86_400)))
                rec["updated_at"] = at.isoformat()
            if rng.random() < 0.8:
                rec["gender"] = (
                    int(rng.choice([1, 2])) if rng.random() < 0.2 else int(pop.gender[u])
                )
            if rng.random() < 0.75:
                age = int(pop.age[u]) if pop.age[u] >= 0 else int(rng.integers(10, 70))
                born = cfg.end - dt.timedelta(days=int(age * 365.25 + rng.integers(0, 365)))
                if rng.random() < 0.2:
                    rec["birth_year"] = born.year
                else:
                    rec["birth_date"] = born.strftime(
                        "%Y-%m-%d" if rng.random() < 0.5 else "%Y%m%d"
                    )
            if rng.random() < 0.7:
                p = pop.provinces[pop.province2[u] if rng.random() < 0.2 else pop.province[u]]
                cities = pop.cities_of[p]
                if rng.random() < 0.8:
                    rec["province"] = info[p][0]
                if cities and rng.random() < 0.7:
                    rec["city"] = info[cities[int(rng.integers(0, len(cities)))]][1]
            records.append(rec)
    path.parent.mkdir(parents=True, exist_ok=True)
    opener: Any = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "wt", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return len(records)
