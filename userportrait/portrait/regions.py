"""Province and city ids (GB/T 2260) and the normaliser from raw strings (docs/regions.md).

The table is package data (``data/regions.csv``; docs/regions.md says where it comes from
and how to rebuild it), read on first use and then kept. Lookups accept full and short
Chinese names (simplified or traditional), pinyin/English in any case and spacing, and
2/4/6-digit codes; each call is a few dict lookups.

>>> normalize_province("Guangdong Province"), normalize_city("440106", None)
(44, 4401)
>>> normalize_city("朝阳区", 11), normalize_city("朝阳", None), normalize_city("xyz", 44)
(1101, 2113, 4499)
"""

from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from typing import Final

UNKNOWN: Final = 0  # 未知
OTHER_PROVINCE: Final = 99  # 其他
_OTHER_CITY: Final = 99  # the last two digits of a province's 其他 city

# Province-level divisions that are one city each.
_ONE_CITY: Final = {11: 1101, 12: 1201, 31: 3101, 50: 5001, 81: 8101, 82: 8201}

# Traditional -> simplified for every character of the table's names that differs
# (OpenCC s2t/s2tw/s2hk; printed by `scripts/build_regions.py --t2s`).
_T2S: Final = str.maketrans(
    "亞來倫內別則匯區吳呂園圖墊壩壯壽婁寧寶岡峯島峽崑崗嶺巖廈廣張彥慶懷揚撫晉東棗楊榮樂樹橋欽"
    "涼溝溫滄漢潛澤濟濰濱瀋瀘灣烏無煙營爾瑪瓊畢盤節紅納紹綏維綿縣義肅臨臺興荊莊華萬蕪薊薩蘆蘇"
    "蘭衛衞許豐貝貢貴賀資賓賢贛農連運達遠遷遼邁邊鄉鄭鄲銀銅錦錫鎮鐵長門開閔關陝陽隨隴雙雞雲靜"
    "頂順頗頭饒馬駐魯鮮鴨鶴鷹鹽麗黃齊龍",
    "亚来伦内别则汇区吴吕园图垫坝壮寿娄宁宝冈峰岛峡昆岗岭岩厦广张彦庆怀扬抚晋东枣杨荣乐树桥钦"
    "凉沟温沧汉潜泽济潍滨沈泸湾乌无烟营尔玛琼毕盘节红纳绍绥维绵县义肃临台兴荆庄华万芜蓟萨芦苏"
    "兰卫卫许丰贝贡贵贺资宾贤赣农连运达远迁辽迈边乡郑郸银铜锦锡镇铁长门开闵关陕阳随陇双鸡云静"
    "顶顺颇头饶马驻鲁鲜鸭鹤鹰盐丽黄齐龙",
)
_CN_PREFIXES: Final = ("中华人民共和国", "中国")
_CN_SUFFIXES: Final = (
    "特别行政区", "自治区", "自治州", "自治县", "地区", "新区", "林区", "省", "市", "盟", "区",
    "县", "州",
)  # fmt: skip
# An ethnic name inside a division's name starts its suffix: 延边朝鲜族自治州 -> 延边.
_ETHNIC: Final = (
    "朝鲜族", "土家族", "布依族", "哈尼族", "景颇族", "傈僳族", "蒙古族", "柯尔克孜", "哈萨克",
    "维吾尔", "苗族", "藏族", "羌族", "彝族", "侗族", "壮族", "傣族", "白族", "回族", "黎族",
    "蒙古",
)  # fmt: skip
_LATIN_JUNK: Final = re.compile(r"[\s'’‘`´\-_.,·/()]+")
_LATIN_SUFFIX: Final = re.compile(
    r"(china|prc|specialadministrativeregion|sar|autonomousregion|autonomousprefecture|"
    r"zizhiqu|zizhizhou|province|sheng|municipality|city|shi|prefecture|diqu|league|meng|"
    r"district|county|qu|zhuangzu|zhuang|huizu|hui|uygur|uyghur|uighur|weiwuer)$"
)
_EXTRA_PROVINCE_ALIASES: Final = {"内蒙": 15, "hk": 81, "hksar": 81}


@dataclass(frozen=True, slots=True)
class _Row:
    code: int
    name: str
    short: str
    pinyin: tuple[str, ...]  # the first is shown; the others are accepted as input
    parent: int  # 0 for a province


@dataclass(frozen=True, slots=True)
class _Tables:
    provinces: dict[int, _Row]
    cities: dict[int, _Row]
    counties: dict[int, int]  # 6-digit county-level code -> the city id it counts under
    province_alias: dict[str, int]
    # key -> (tier, city id): tier 0 names a city, tier 1 a county-level unit inside one
    city_alias: dict[str, frozenset[tuple[int, int]]]


def _latin(text: str) -> str | None:
    """Lower-case ASCII letters only (Guang-dong Province -> guangdongprovince), else None."""
    key = _LATIN_JUNK.sub("", text.lower())
    return key if key.isascii() and key.isalpha() else None


def _forms(text: str) -> list[str]:
    """Keys to try, most literal first: the text, then with prefixes and suffixes removed."""
    forms = [text]
    latin = _latin(text)
    if latin is not None:
        forms.append(latin)
        while (stripped := _LATIN_SUFFIX.sub("", latin)) and stripped != latin:
            forms.append(latin := stripped)
        return forms
    for prefix in _CN_PREFIXES:
        if text.startswith(prefix) and len(text) > len(prefix) + 1:
            forms.append(text := text[len(prefix) :])
            break
    for suffix in _CN_SUFFIXES:
        if text.endswith(suffix) and len(text) > len(suffix) + 1:
            forms.append(text := text[: -len(suffix)])
            break
    cut = min((i for e in _ETHNIC if (i := text.find(e)) > 1), default=-1)
    if cut > 0:
        forms.append(text[:cut])
    return forms


def _clean(raw: str | None) -> str | None:
    if raw is None:
        return None
    text = unicodedata.normalize("NFKC", raw).strip()
    return text.translate(_T2S) if text else None


def _row_keys(row: _Row) -> set[str]:
    keys = {row.name, row.short, *_forms(row.name)}
    for alt in row.pinyin:
        latin = _latin(alt)
        if latin:
            keys.add(latin)
    return keys


@cache
def _rows() -> list[dict[str, str]]:
    text = resources.files("userportrait").joinpath("data/regions.csv").read_text("utf-8")
    return list(csv.DictReader(text.splitlines()))


@cache
def _names() -> tuple[dict[int, str], dict[int, str]]:
    """Province full names and city short names by id: all a query's answer needs (the
    aliases of ``_tables`` cost a tenth of a second to build, for normalising only)."""
    rows = _rows()
    provinces = {int(r["code"]): r["name"] for r in rows if len(r["code"]) == 2}
    cities = {int(r["code"]): r["short"] for r in rows if len(r["code"]) == 4}
    return provinces, cities


@cache
def _tables() -> _Tables:
    provinces: dict[int, _Row] = {}
    cities: dict[int, _Row] = {}
    county_rows: list[_Row] = []
    for rec in _rows():
        row = _Row(
            int(rec["code"]),
            rec["name"],
            rec["short"],
            tuple(rec["pinyin"].split("|")),
            int(rec["parent"] or 0),
        )
        digits = len(rec["code"])
        if digits == 2:
            provinces[row.code] = row
        elif digits == 4:
            cities[row.code] = row
        else:
            county_rows.append(row)

    province_alias = dict(_EXTRA_PROVINCE_ALIASES)
    for p in provinces.values():
        province_alias.update(dict.fromkeys(_row_keys(p), p.code))

    counties: dict[int, int] = {}
    city_alias: dict[str, set[tuple[int, int]]] = {}
    for c in cities.values():
        for key in _row_keys(c):
            city_alias.setdefault(key, set()).add((0, c.code))
    for r in county_rows:
        # under a municipality (parent 1101) or directly under a province (parent 42: 仙桃)
        target = r.parent if r.parent >= 100 else r.parent * 100 + _OTHER_CITY
        counties[r.code] = target
        for key in _row_keys(r) - province_alias.keys():  # 河北区 is no alias of 河北
            city_alias.setdefault(key, set()).add((1, target))
    return _Tables(
        provinces,
        cities,
        counties,
        province_alias,
        {k: frozenset(v) for k, v in city_alias.items()},
    )


def province_name(pid: int) -> str:
    """44 -> 广东省; 0 -> 未知; 99 -> 其他; KeyError for an id that is not in the table."""
    if pid == UNKNOWN:
        return "未知"
    if pid == OTHER_PROVINCE:
        return "其他"
    return _names()[0][pid]


def city_name(cid: int) -> str:
    """4401 -> 广州; 0 -> 未知; any xx99 -> 其他; KeyError for an id not in the table."""
    if cid == UNKNOWN:
        return "未知"
    if cid % 100 == _OTHER_CITY:
        return "其他"
    return _names()[1][cid]


def province_of_city(cid: int) -> int:
    """4401 -> 44; 4499 -> 44; 9999 -> 99; 0 -> 0."""
    return cid // 100


def all_provinces() -> list[tuple[int, str]]:
    """(id, full name) of every province-level division, by id; 未知 and 其他 not included."""
    return [(p.code, p.name) for p in sorted(_tables().provinces.values(), key=_code)]


def all_cities() -> list[tuple[int, str, int]]:
    """(id, short name, province id) of every city, by id; no 未知 or 其他 rows."""
    return [(c.code, c.short, c.parent) for c in sorted(_tables().cities.values(), key=_code)]


def region_info() -> dict[int, tuple[str, str, str]]:
    """id -> (full name, short name, pinyin) of every province and city (for the generator)."""
    t = _tables()
    return {
        r.code: (r.name, r.short, r.pinyin[0]) for r in [*t.provinces.values(), *t.cities.values()]
    }


@cache
def population() -> dict[int, int]:
    """id -> resident population of every province and city (the table's ``population``
    column; docs/regions.md says where it comes from). The generator's weights."""
    return {int(r["code"]): int(r["population"]) for r in _rows() if r["population"]}


def _code(row: _Row) -> int:
    return row.code


@lru_cache(maxsize=1 << 14)
def normalize_province(raw: str | None) -> int | None:
    """Province id of a raw string; None when absent, 99 (其他) when not recognised."""
    text = _clean(raw)
    if text is None:
        return None
    t = _tables()
    if text.isascii() and text.isdigit():
        return _province_from_code(text, t)
    for key in _forms(text):
        if key in t.province_alias:
            return t.province_alias[key]
    return OTHER_PROVINCE


@lru_cache(maxsize=1 << 16)
def normalize_city(raw: str | None, province_id: int | None) -> int | None:
    """City id of a raw string; None when absent, province*100+99 (其他) when not recognised.

    Several cities can match one string (Fuzhou: 福州 3501, 抚州 3610; 朝阳: Liaoning's
    朝阳市 2113, Beijing's 朝阳区 -> 1101). Then the one in ``province_id`` wins; failing
    that a city matched by its own name beats one matched by a district or county inside
    it, and then the smallest id wins.
    """
    text = _clean(raw)
    if text is None:
        return None
    t = _tables()
    real = province_id if province_id in t.provinces else None
    other = (real or OTHER_PROVINCE) * 100 + _OTHER_CITY
    if text.isascii() and text.isdigit():
        return _city_from_code(text, t) or other
    if text in t.city_alias:  # the first of the forms, and the common case: no _forms()
        return _choose(t.city_alias[text], real)
    forms = _forms(text)
    for key in forms:
        if key in t.city_alias:
            return _choose(t.city_alias[key], real)
    for key in forms:  # a province given as the city: 台湾 -> 7199 (its 其他 city)
        if key in t.province_alias:
            pid = t.province_alias[key]
            return _ONE_CITY.get(pid, pid * 100 + _OTHER_CITY)
    return other


def _choose(candidates: frozenset[tuple[int, int]], province_id: int | None) -> int:
    in_province = [code for _, code in candidates if code // 100 == province_id]
    if in_province:
        return min(in_province)
    return min(candidates)[1]  # tier 0 (a city's own name) first, then the smallest id


def _province_from_code(text: str, t: _Tables) -> int:
    if len(text) == 2:
        return int(text) if int(text) in t.provinces else OTHER_PROVINCE
    city = _city_from_code(text, t) if len(text) in (4, 6) else None
    return city // 100 if city else OTHER_PROVINCE


def _city_from_code(text: str, t: _Tables) -> int | None:
    """4401, 440100, 440106 -> 4401; 110105 -> 1101; 429004 -> 4299; 440000, 44 -> 4499."""
    if len(text) == 2:
        text += "0000"
    if len(text) == 6:
        code = int(text)
        if code in t.counties:
            return t.counties[code]
        if text.endswith("0000") and code // 10000 in t.provinces:
            pid = code // 10000
            return _ONE_CITY.get(pid, pid * 100 + _OTHER_CITY)
        text = text[:4]
    if len(text) != 4:
        return None
    code, pid = int(text), int(text[:2])
    if code in t.cities:
        return code
    if pid in _ONE_CITY and text[2:] in ("01", "02"):  # 5002 (重庆's counties) -> 5001
        return _ONE_CITY[pid]
    if text[2:] == "90" and pid in t.provinces:  # 省直辖县级行政单位 group: 4290 -> 4299
        return pid * 100 + _OTHER_CITY
    return None
