"""Province and city ids (GB/T 2260) and the normaliser from raw strings (SPEC §2-3).

The table is package data (``data/regions.csv``, see docs/regions.md for its source),
loaded on first use. Lookups accept full and short Chinese names (simplified or
traditional), pinyin/English in any case and spacing, and 2/4/6-digit codes.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Final

UNKNOWN: Final = 0
OTHER_PROVINCE: Final = 99
MUNICIPALITY_CITY: Final = {11: 1101, 12: 1201, 31: 3101, 50: 5001, 81: 8101, 82: 8201}

# Traditional characters that occur in division names -> simplified.
_T2S: Final = str.maketrans(
    "廣東臺灣門內貴遼寧龍蘇慶雲陝肅區維爾陽濱漢長蘭島灣齊烏魯嶺關鄭開葉懷華鄂錫"
    "滬濟瀋陽鎮嘉與壽貢廈莊潮鍾頭佛韶興澳",
    "广东台湾门内贵辽宁龙苏庆云陕肃区维尔阳滨汉长兰岛湾齐乌鲁岭关郑开叶怀华鄂锡"
    "沪济沈阳镇嘉与寿贡厦庄潮钟头佛韶兴澳",
)
_CN_SUFFIXES: Final = ("特别行政区", "自治区", "自治州", "地区", "省", "市", "盟", "区")
_LATIN_SUFFIXES: Final = re.compile(
    r"(province|sheng|shi|city|sar|specialadministrativeregion|autonomousregion|zizhiqu|"
    r"prefecture|diqu|municipality)$"
)
_EXTRA_PROVINCE_ALIASES: Final = {
    "neimenggu": 15, "neimongol": 15, "nm": 15, "xizang": 54, "tibet": 54,
    "xianggang": 81, "hk": 81, "hongkong": 81, "aomen": 82, "macao": 82, "macau": 82,
    "shanxi": 14, "shaanxi": 61, "taiwan": 71, "peking": 11,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Region:
    code: int
    name: str
    short: str
    pinyin: str
    parent: int  # 0 for provinces


@dataclass(frozen=True, slots=True)
class _Tables:
    provinces: dict[int, Region]
    cities: dict[int, Region]
    province_alias: dict[str, int]
    city_alias: dict[str, tuple[int, ...]]


def _latin_key(text: str) -> str:
    key = re.sub(r"[\s'’`\-_.]+", "", text.lower())
    return _LATIN_SUFFIXES.sub("", key) or key


def _cn_keys(name: str) -> set[str]:
    keys = {name}
    for suffix in _CN_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix) + 1:
            keys.add(name[: -len(suffix)])
    return keys


@cache
def _tables() -> _Tables:
    provinces: dict[int, Region] = {}
    cities: dict[int, Region] = {}
    text = resources.files("userportrait").joinpath("data/regions.csv").read_text("utf-8")
    for row in csv.DictReader(text.splitlines()):
        region = Region(
            int(row["code"]), row["name"], row["short"], row["pinyin"], int(row["parent"] or 0)
        )
        (cities if region.parent else provinces)[region.code] = region
    province_alias: dict[str, int] = dict(_EXTRA_PROVINCE_ALIASES)
    for p in provinces.values():
        for key in _cn_keys(p.name) | {p.short, _latin_key(p.pinyin)}:
            province_alias[key] = p.code
    city_alias: dict[str, set[int]] = {}
    for c in cities.values():
        for key in _cn_keys(c.name) | {c.short, _latin_key(c.pinyin)}:
            city_alias.setdefault(key, set()).add(c.code)
    return _Tables(
        provinces, cities, province_alias, {k: tuple(sorted(v)) for k, v in city_alias.items()}
    )


def province_name(pid: int) -> str:
    if pid == UNKNOWN:
        return "未知"
    if pid == OTHER_PROVINCE:
        return "其他"
    return _tables().provinces[pid].name


def city_name(cid: int) -> str:
    if cid == UNKNOWN:
        return "未知"
    if cid % 100 == 99:
        return "其他"
    return _tables().cities[cid].short


def province_of_city(cid: int) -> int:
    return cid // 100


def all_provinces() -> list[tuple[int, str]]:
    return [(p.code, p.name) for p in sorted(_tables().provinces.values(), key=lambda r: r.code)]


def all_cities() -> list[tuple[int, str, int]]:
    return [
        (c.code, c.short, c.parent) for c in sorted(_tables().cities.values(), key=lambda r: r.code)
    ]


def region_info() -> dict[int, tuple[str, str, str]]:
    """code -> (full name, short name, pinyin) for every province and city."""
    t = _tables()
    return {
        r.code: (r.name, r.short, r.pinyin) for r in [*t.provinces.values(), *t.cities.values()]
    }


def _clean(raw: str | None) -> str | None:
    if raw is None:
        return None
    text = raw.strip()
    return text.translate(_T2S) if text else None


def normalize_province(raw: str | None) -> int | None:
    """Province id; None when absent, 99 (其他) when not recognised."""
    text = _clean(raw)
    if text is None:
        return None
    t = _tables()
    if text.isdigit():
        if (
            len(text) in (2, 6)
            and int(text[:2]) in t.provinces
            and (
                len(text) == 2
                or text[2:] == "0000"
                or int(text[:4]) in t.cities
                or int(text[:2]) in MUNICIPALITY_CITY
            )
        ):
            return int(text[:2])
        return OTHER_PROVINCE
    for key in (text, *_cn_keys(text), _latin_key(text)):
        if key in t.province_alias:
            return t.province_alias[key]
    return OTHER_PROVINCE


def normalize_city(raw: str | None, province_id: int | None) -> int | None:
    """City id; None when absent, province*100+99 (其他) when not recognised."""
    text = _clean(raw)
    if text is None:
        return None
    t = _tables()
    other = (
        province_id if province_id and province_id in t.provinces else OTHER_PROVINCE
    ) * 100 + 99
    if text.isdigit():
        return _city_from_code(text, t) or other
    candidates: tuple[int, ...] = ()
    for key in (text, *_cn_keys(text), _latin_key(text)):
        if key in t.city_alias:
            candidates = t.city_alias[key]
            break
    else:
        # a municipality (or HK/Macau) given by its province-level name: 北京, Beijing
        for key in (text, *_cn_keys(text), _latin_key(text)):
            pid = t.province_alias.get(key)
            if pid in MUNICIPALITY_CITY:
                return MUNICIPALITY_CITY[pid]
    if not candidates:
        return other
    same = [c for c in candidates if c // 100 == province_id]
    return same[0] if same else candidates[0]


def _city_from_code(text: str, t: _Tables) -> int | None:
    if len(text) not in (4, 6):
        return None
    prov = int(text[:2])
    if prov in MUNICIPALITY_CITY and prov in t.provinces:
        return MUNICIPALITY_CITY[prov]
    code = int(text[:4])
    return code if code in t.cities else None
