"""The GB/T 2260 table and the province/city normaliser."""

from __future__ import annotations

import pytest

from userportrait.portrait import regions as r


def test_table_covers_every_division() -> None:
    assert len(r.all_provinces()) == 34
    cities = r.all_cities()
    mainland = [
        c for c in cities if c[2] not in (71, 81, 82) and c[0] not in (1101, 1201, 3101, 5001)
    ]
    assert len(mainland) == 333
    codes = {c[0] for c in cities}
    assert {1101, 1201, 3101, 5001, 8101, 8201, 7101} <= codes
    assert r.province_name(44) == "广东省" and r.city_name(4401) == "广州"
    assert (r.province_name(0), r.province_name(99), r.city_name(0), r.city_name(4499)) == (
        "未知", "其他", "未知", "其他")  # fmt: skip


@pytest.mark.parametrize(
    "raw",
    ["广东", "广东省", "廣東", "Guangdong", "GUANGDONG", "guang dong", "Guangdong Province",
     "guangdong sheng", "44", "440000", " 广东 "],
)  # fmt: skip
def test_province_forms(raw: str) -> None:
    assert r.normalize_province(raw) == 44


@pytest.mark.parametrize(
    ("raw", "pid"),
    [("Hong Kong", 81), ("HongKong", 81), ("香港特别行政区", 81), ("Macao", 82), ("澳門", 82),
     ("Inner Mongolia", 15), ("内蒙古", 15), ("Tibet", 54), ("Xizang", 54), ("Shaanxi", 61),
     ("Shanxi", 14), ("台灣", 71), ("广西壮族自治区", 45), ("California", 99), ("xyz", 99),
     ("12", 12), ("99", 99)],
)  # fmt: skip
def test_province_aliases(raw: str, pid: int) -> None:
    assert r.normalize_province(raw) == pid


@pytest.mark.parametrize("raw", [None, "", "   "])
def test_absent(raw: str | None) -> None:
    assert r.normalize_province(raw) is None and r.normalize_city(raw, 44) is None


@pytest.mark.parametrize(
    ("raw", "pid", "cid"),
    [("广州", None, 4401), ("广州市", 44, 4401), ("Guangzhou", None, 4401),
     ("guangzhou shi", None, 4401), ("4401", None, 4401), ("440100", None, 4401),
     ("440106", None, 4401), ("110105", None, 1101), ("500230", None, 5001),
     ("北京", None, 1101), ("Beijing", 11, 1101), ("上海市", None, 3101), ("香港", None, 8101),
     ("澳门", 82, 8201), ("延边", None, 2224), ("延边朝鲜族自治州", 22, 2224),
     ("吉林", 22, 2202), ("Fuzhou", 35, 3501), ("Fuzhou", 36, 3610), ("Fuzhou", None, 3501),
     ("Taizhou", 32, 3212), ("Suzhou", 34, 3413), ("深圳", 11, 4403),
     ("nowhere", 44, 4499), ("nowhere", None, 9999), ("nowhere", 99, 9999), ("9999", 44, 4499)],
)  # fmt: skip
def test_city_forms_and_ambiguity(raw: str, pid: int | None, cid: int) -> None:
    assert r.normalize_city(raw, pid) == cid


def test_every_city_round_trips() -> None:
    for code, short, parent in r.all_cities():
        assert r.normalize_city(short, parent) == code, short
        assert r.normalize_city(str(code), None) == code
        assert r.province_of_city(code) == parent
