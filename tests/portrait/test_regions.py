"""The GB/T 2260 table and the province/city normaliser (docs/regions.md)."""

from __future__ import annotations

from collections import Counter

import pytest

from userportrait.portrait import regions as r

MUNICIPALITIES = {11: 1101, 12: 1201, 31: 3101, 50: 5001}


def test_counts() -> None:
    provinces = r.all_provinces()
    assert len(provinces) == 34
    assert provinces == sorted(provinces)
    assert {44: "广东省", 11: "北京市", 45: "广西壮族自治区", 81: "香港特别行政区"}.items() <= (
        dict(provinces).items()
    )
    cities = r.all_cities()
    assert cities == sorted(cities)
    by_province = Counter(p for _, _, p in cities)
    mainland = [
        c for c in cities if c[2] not in (71, 81, 82) and c[0] not in MUNICIPALITIES.values()
    ]
    assert len(mainland) >= 333
    assert all(by_province[p] == 1 for p in (11, 12, 31, 50, 81, 82))
    assert by_province[71] >= 9
    assert {1101, 1201, 3101, 5001, 8101, 8201, 7101, 7108, 7109} <= {c[0] for c in cities}
    assert {p for _, _, p in cities} == {p for p, _ in provinces}
    assert all(r.province_of_city(code) == parent for code, _, parent in cities)


def test_names() -> None:
    assert (r.province_name(0), r.province_name(99), r.province_name(44)) == (
        "未知",
        "其他",
        "广东省",
    )
    assert (r.city_name(0), r.city_name(4499), r.city_name(9999)) == ("未知", "其他", "其他")
    assert (r.city_name(4401), r.city_name(1101), r.city_name(2224)) == ("广州", "北京", "延边")
    assert (r.city_name(8101), r.city_name(8201), r.city_name(7101)) == ("香港", "澳门", "台北")
    assert (r.province_of_city(4401), r.province_of_city(4499), r.province_of_city(9999)) == (
        44, 44, 99)  # fmt: skip
    with pytest.raises(KeyError):
        r.province_name(98)
    with pytest.raises(KeyError):
        r.city_name(4498)


@pytest.mark.parametrize("raw", [None, "", "   ", "\u3000"])
def test_absent(raw: str | None) -> None:
    assert r.normalize_province(raw) is None
    assert r.normalize_city(raw, 44) is None
    assert r.normalize_city(raw, None) is None


@pytest.mark.parametrize(
    "raw",
    ["广东", "广东省", "廣東", "廣東省", "Guangdong", "GUANGDONG", "guang dong", "Guang-dong",
     "Guangdong Province", "guangdong sheng", "44", "440000", "440100", "440106", " 广东 ",
     "中国广东", "４４"],
)  # fmt: skip
def test_province_forms(raw: str) -> None:
    assert r.normalize_province(raw) == 44


@pytest.mark.parametrize(
    ("raw", "pid"),
    [("北京", 11), ("北京市", 11), ("Beijing", 11), ("beijing shi", 11), ("11", 11),
     ("110000", 11), ("Hong Kong", 81), ("HongKong", 81), ("hong kong sar", 81), ("香港", 81),
     ("香港特别行政区", 81), ("810000", 81), ("Macao", 82), ("Macau", 82), ("澳門", 82),
     ("澳门特别行政区", 82), ("Inner Mongolia", 15), ("Nei Mongol", 15), ("内蒙古", 15),
     ("内蒙古自治区", 15), ("Tibet", 54), ("Xizang", 54), ("西藏自治区", 54), ("Shaanxi", 61),
     ("陕西", 61), ("Shanxi", 14), ("山西省", 14), ("台湾", 71), ("臺灣", 71), ("台灣", 71),
     ("Taiwan", 71), ("广西", 45), ("广西壮族自治区", 45), ("廣西", 45),
     ("Guangxi Zhuang Autonomous Region", 45), ("宁夏回族自治区", 64), ("Ningxia Hui", 64),
     ("新疆维吾尔自治区", 65), ("新疆", 65), ("黑龍江", 23), ("Heilongjiang", 23),
     ("California", 99), ("xyz", 99), ("中国", 99), ("98", 99), ("99", 99), ("123", 99),
     ("999999", 99)],
)  # fmt: skip
def test_province_aliases(raw: str, pid: int) -> None:
    assert r.normalize_province(raw) == pid


@pytest.mark.parametrize(
    ("raw", "pid", "cid"),
    [("广州", None, 4401), ("广州市", 44, 4401), ("廣州", None, 4401), ("Guangzhou", None, 4401),
     ("guangzhou shi", None, 4401), ("GUANGZHOU", 44, 4401), ("4401", None, 4401),
     ("440100", None, 4401), ("440106", None, 4401), ("深圳", 44, 4403),
     ("延边", None, 2224), ("延边朝鲜族自治州", 22, 2224), ("延边州", None, 2224),
     ("Xi'an", None, 6101), ("xian", 61, 6101), ("Urumqi", None, 6501), ("乌鲁木齐", 65, 6501),
     ("哈爾濱", None, 2301),
     # municipalities, HK, Macau, Taiwan
     ("北京", None, 1101), ("北京市", 11, 1101), ("Beijing", 11, 1101), ("上海市", None, 3101),
     ("重庆", 50, 5001), ("110000", None, 1101), ("1101", None, 1101), ("5002", None, 5001),
     ("香港", None, 8101), ("Hong Kong", 81, 8101), ("澳门", 82, 8201), ("澳門", None, 8201),
     ("Macao", None, 8201), ("台北", None, 7101), ("臺北", 71, 7101), ("Taipei", None, 7101),
     ("新北", 71, 7108), ("高雄市", None, 7102),
     # districts and counties of the municipalities
     ("朝阳区", 11, 1101), ("朝阳区", None, 1101), ("海淀区", None, 1101), ("海淀", 11, 1101),
     ("Haidian", None, 1101), ("浦东新区", None, 3101), ("Pudong", 31, 3101),
     ("滨海新区", 12, 1201), ("河北区", 12, 1201), ("丰都县", None, 5001),
     ("石柱土家族自治县", 50, 5001),
     # county-level units under a province: that province's 其他 city
     ("仙桃", None, 4299), ("仙桃市", 42, 4299), ("429004", None, 4299), ("济源", 41, 4199),
     ("石河子", None, 6599), ("五指山", 46, 4699), ("神农架林区", None, 4299),
     # a province given as the city
     ("广东", None, 4499), ("台湾", None, 7199), ("440000", None, 4499), ("44", None, 4499),
     # not recognised
     ("nowhere", 44, 4499), ("nowhere", None, 9999), ("nowhere", 0, 9999),
     ("nowhere", 99, 9999), ("9999", 44, 4499), ("4498", None, 9999), ("12345", 44, 4499)],
)  # fmt: skip
def test_city_forms(raw: str, pid: int | None, cid: int) -> None:
    assert r.normalize_city(raw, pid) == cid


@pytest.mark.parametrize(
    ("raw", "pid", "cid"),
    [
        # a city named like a province: the city
        ("吉林", None, 2202), ("吉林", 22, 2202), ("吉林市", 44, 2202),
        # 朝阳: Liaoning's 朝阳市 by its own name beats Beijing's 朝阳区 unless in Beijing
        ("朝阳", None, 2113), ("朝阳", 21, 2113), ("朝阳", 11, 1101), ("朝阳", 44, 2113),
        ("Chaoyang", None, 2113), ("Chaoyang", 11, 1101),
        # pinyin shared by two cities: the event's province, else the smallest id
        ("Fuzhou", 35, 3501), ("Fuzhou", 36, 3610), ("Fuzhou", None, 3501), ("Fuzhou", 44, 3501),
        ("Taizhou", 32, 3212), ("Taizhou", 33, 3310), ("Taizhou", None, 3212),
        ("Suzhou", 32, 3205), ("Suzhou", 34, 3413), ("Suzhou", None, 3205),
        ("Yichun", 23, 2307), ("Yichun", 36, 3609), ("Yichun", None, 2307),
        ("Yulin", 45, 4509), ("Yulin", 61, 6108),
        # recognised in another province than the event's: still the recognised city
        ("深圳", 11, 4403), ("抚州", 35, 3610),
    ],
)  # fmt: skip
def test_ambiguity(raw: str, pid: int | None, cid: int) -> None:
    assert r.normalize_city(raw, pid) == cid


def test_every_city_round_trips() -> None:
    info = r.region_info()
    cities = r.all_cities()
    short_count = Counter(short for _, short, _ in cities)
    for code, short, parent in cities:
        name, _, pinyin = info[code]
        assert r.normalize_city(short, parent) == code, short
        assert r.normalize_city(name, parent) == code, name
        assert r.normalize_city(pinyin, parent) == code, pinyin
        assert r.normalize_city(str(code), None) == code
        assert r.normalize_city(f"{code}00", None) == code
        if short_count[short] == 1:
            assert r.normalize_city(name, None) == code, name
            assert r.normalize_city(short, None) == code, short
        assert r.city_name(code) == short


def test_every_province_round_trips() -> None:
    info = r.region_info()
    for code, name in r.all_provinces():
        _, short, pinyin = info[code]
        for raw in (name, short, pinyin, pinyin.upper(), str(code), f"{code}0000"):
            assert r.normalize_province(raw) == code, raw


def test_municipality_districts_map_to_their_city() -> None:
    samples = {"110101": 1101, "110105": 1101, "110108": 1101, "110119": 1101,
               "120101": 1201, "120116": 1201, "120119": 1201, "310101": 3101,
               "310115": 3101, "310151": 3101, "500101": 5001, "500103": 5001,
               "500156": 5001, "500230": 5001, "500243": 5001, "500229": 5001}  # fmt: skip
    for code, city in samples.items():
        assert r.normalize_city(code, None) == city, code
        assert r.normalize_province(code) == city // 100, code
