"""Tiny hand-built events with their exact expected portraits (docs/semantics.md)."""

from __future__ import annotations

from typing import Any

A = "wxa000000000000001"

EVENTS: list[dict[str, Any]] = [
    # u1: first seen 06-01 (before the window); in the window moves to 深圳, switches platform.
    {"appid": A, "openid": "u1", "ts": "2024-06-01T10:00:00+08:00", "province": "广东",
     "city": "广州", "gender": 1, "platform": "ios", "device": "iPhone 13", "age": 20},
    {"appid": A, "openid": "u1", "ts": "2024-06-10T09:00:00+08:00", "province": "广东省",
     "city": "深圳"},
    {"appid": A, "openid": "u1", "ts": "2024-06-11T09:00:00+08:00", "platform": "android",
     "age": 35},
    # u2: new in the window; two events at the same ts: the larger id / model name wins.
    {"appid": A, "openid": "u2", "ts": "2024-06-10T12:00:00+08:00", "province": "北京",
     "city": "北京", "device": "OPPO R9", "gender": "female", "platform": "iPhone"},
    {"appid": A, "openid": "u2", "ts": "2024-06-10T04:00:00Z", "province": "Guangdong",
     "city": "4401", "device": "vivo X27", "gender": "male", "platform": "ohos", "age": 17},
    # u3: 15:59:59Z is still 06-09 in Shanghai (first seen, outside); 16:00:00Z is 06-10.
    {"appid": A, "openid": "u3", "ts": "2024-06-09T15:59:59Z", "gender": "2", "province": "44"},
    {"appid": A, "openid": "u3", "ts": "2024-06-09T16:00:00Z", "platform": "windows"},
    # u4: 06-12T16:00:00Z is 06-13 in Shanghai: after the window.
    {"appid": A, "openid": "u4", "ts": "2024-06-12T16:00:00Z", "province": "上海"},
    # u5: epoch ms; gender 0 is absent; an unknown platform string is 其他.
    {"appid": A, "openid": "u5", "ts": 1718064000000, "platform": "PlayStation", "gender": 0},
    # another appid never leaks into A's answers
    {"appid": "wxb000000000000002", "openid": "u1", "ts": "2024-06-10T10:00:00+08:00"},
]  # fmt: skip


def row(i: int, name: str, value: int) -> dict[str, Any]:
    return {"id": i, "name": name, "value": value}


WINDOW_0610_0612: dict[str, Any] = {
    "ref_date": "20240610-20240612",
    "visit_uv_new": {
        "province": [row(0, "未知", 1), row(44, "广东省", 1)],
        "city": [row(0, "未知", 1), row(4401, "广州", 1)],
        "genders": [row(0, "未知", 1), row(2, "女", 1)],
        "platforms": [row(3, "HarmonyOS", 1), row(6, "其他", 1)],
        "devices": [{"name": "vivo X27", "value": 1}, {"name": "未知", "value": 1}],
        "ages": [row(0, "未知", 1), row(1, "17岁以下", 1)],
    },
    "visit_uv": {
        "province": [row(0, "未知", 2), row(44, "广东省", 2)],
        "city": [row(0, "未知", 2), row(4401, "广州", 1), row(4403, "深圳", 1)],
        "genders": [row(0, "未知", 3), row(2, "女", 1)],
        "platforms": [row(2, "Android", 1), row(3, "HarmonyOS", 1), row(4, "Windows", 1),
                      row(6, "其他", 1)],
        "devices": [{"name": "未知", "value": 3}, {"name": "vivo X27", "value": 1}],
        "ages": [row(0, "未知", 2), row(1, "17岁以下", 1), row(4, "30-39岁", 1)],
    },
}  # fmt: skip

_U3_ONLY: dict[str, Any] = {
    "province": [row(44, "广东省", 1)],
    "city": [row(0, "未知", 1)],
    "genders": [row(2, "女", 1)],
    "platforms": [row(0, "未知", 1)],
    "devices": [{"name": "未知", "value": 1}],
    "ages": [row(0, "未知", 1)],
}
DAY_0609: dict[str, Any] = {"ref_date": "20240609", "visit_uv_new": _U3_ONLY, "visit_uv": _U3_ONLY}

EMPTY: dict[str, list[Any]] = {
    k: [] for k in ("province", "city", "genders", "platforms", "devices", "ages")
}

# Issue 17: (openid, fields), mostly an ip only; the last ones give a region of their own.
IP_VISITS: list[tuple[str, dict[str, Any]]] = [
    ("nanjing", {"ip": "114.114.114.114"}),
    ("nanjing2", {"ip": "114.114.114.5"}),  # same /24
    ("hangzhou", {"ip": " 223.5.5.5 "}),  # spaces around it
    ("beijing", {"ip": "180.76.76.76"}),
    ("beijing2", {"ip": "::ffff:119.29.29.29"}),  # IPv4-mapped IPv6
    ("hongkong", {"ip": "202.45.84.58"}),
    ("abroad", {"ip": "8.8.8.8"}),
    ("private", {"ip": "192.168.1.1"}),
    ("loopback", {"ip": "127.0.0.1"}),
    ("ipv6", {"ip": "240e:3b7:3272:d8d0::1"}),  # no IPv6 database: absent
    ("garbage", {"ip": "not an ip"}),  # absent, not a reject
    ("leading0", {"ip": "010.1.1.1"}),  # not an address for Python's ipaddress either
    ("event-wins", {"ip": "114.114.114.114", "province": "广东", "city": "广州"}),
    ("city-only", {"ip": "114.114.114.114", "city": "深圳"}),  # province from the city
    ("province-only", {"ip": "114.114.114.114", "province": "四川"}),  # no city from the ip
]
