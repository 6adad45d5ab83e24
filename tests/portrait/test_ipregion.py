"""Region from the IP (issue 17): real addresses against the shipped ip2region database."""

from __future__ import annotations

import ipaddress

import numpy as np
import pytest

from userportrait.portrait import ipregion

# What the shipped database (ip2region data of 2024-02-28) says, looked up and pinned.
KNOWN = [
    ("114.114.114.114", "114.114.114.0/24", (32, 3201)),  # 114DNS: 江苏 南京
    ("223.5.5.5", "223.5.5.0/24", (33, 3301)),  # AliDNS: 浙江 杭州
    ("180.76.76.76", "180.76.76.0/24", (11, 1101)),  # Baidu DNS: 北京
    ("119.29.29.29", "119.29.29.0/24", (11, 1101)),  # DNSPod (Tencent): 北京 in this db
    ("113.118.113.77", "113.118.113.0/24", (44, 4403)),  # 广东 深圳 (ip2region's example)
    ("202.45.84.58", "202.45.84.0/24", (81, None)),  # 香港 (no city in the db)
    ("202.175.3.3", "202.175.3.0/24", (82, None)),  # 澳门
    ("168.95.1.1", "168.95.1.0/24", (71, None)),  # HiNet DNS: 台湾
    ("8.8.8.8", "8.8.8.0/24", (99, None)),  # abroad -> 其他
    ("1.1.1.1", "1.1.1.0/24", (99, None)),
    (" 223.5.5.5 ", "223.5.5.0/24", (33, 3301)),  # surrounding spaces
    ("::ffff:114.114.114.114", "114.114.114.0/24", (32, 3201)),  # IPv4-mapped
    ("10.0.0.1", "10.0.0.0/24", (None, None)),  # private
    ("192.168.1.1", "192.168.1.0/24", (None, None)),
    ("172.16.5.4", "172.16.5.0/24", (None, None)),
    ("127.0.0.1", "127.0.0.0/24", (None, None)),  # loopback
    ("100.64.0.1", "100.64.0.0/24", (None, None)),  # shared (CGNAT)
    ("224.0.0.1", "224.0.0.0/24", (None, None)),  # multicast
    ("::1", "::/48", (None, None)),  # IPv6: a prefix, no region (IPv4 database)
    ("240e:3b7:3272:d8d0::1", "240e:3b7:3272::/48", (None, None)),
]


@pytest.fixture(scope="module")
def db() -> ipregion.IpDatabase:
    return ipregion.load_db(ipregion.shipped_db())


@pytest.fixture(scope="module")
def official() -> ipregion.ReferenceLookup:
    return ipregion.ReferenceLookup(ipregion.shipped_db())


@pytest.mark.parametrize(("ip", "prefix", "ids"), KNOWN)
def test_known_addresses(
    db: ipregion.IpDatabase, official: ipregion.ReferenceLookup, ip: str, prefix: str, ids: object
) -> None:
    addr = ipregion.parse_ip(ip)
    assert addr is not None and ipregion.prefix_of(addr) == prefix
    assert official.region(prefix) == ids
    assert ipregion.map_texts([ip], db) == [(ip, prefix, ids)]


@pytest.mark.parametrize("raw", [None, "", "  ", "nonsense", "1.2.3", "256.1.1.1", "010.1.1.1",
                                 "1.2.3.4/24", "１.２.３.４", "1.2.3.4.5"])  # fmt: skip
def test_unparseable_is_absent(db: ipregion.IpDatabase, raw: str | None) -> None:
    assert ipregion.parse_ip(raw) is None
    if raw is not None:
        assert ipregion.map_texts([raw], db) == [(raw, None, (None, None))]


def test_shipped_database(db: ipregion.IpDatabase) -> None:
    assert (db.structure, str(db.data_date), len(db.starts)) == (2, "2024-02-28", 720464)


def test_vectorised_lookup_equals_the_official_searcher(
    db: ipregion.IpDatabase, official: ipregion.ReferenceLookup
) -> None:
    rng = np.random.default_rng(17)
    # Random /24s, plus the /24s at every 50th segment start (where regions change).
    keys = np.concatenate([rng.integers(0, 1 << 24, 20_000), db.starts[::50] >> 8])
    province, city = db.lookup_keys(keys)
    for key, p, c in zip(keys.tolist(), province.tolist(), city.tolist(), strict=True):
        prefix = f"{ipaddress.IPv4Address(key << 8)}/24"
        assert official.region(prefix) == (p if p >= 0 else None, c if c >= 0 else None), prefix


def test_special_ranges_are_not_global() -> None:
    for net in ipregion.SPECIAL_V4:  # the first address (what a /24 prefix is looked up by)
        addr = net.network_address
        assert not addr.is_global or addr.is_multicast, net
    inside = np.array([int(n.network_address) >> 8 for n in ipregion.SPECIAL_V4])
    assert ipregion.special_keys(inside).all()
    public = [ipaddress.IPv4Address(a) for a in ("1.0.0.0", "11.0.0.0", "100.128.0.0",
                                                  "172.32.0.0", "192.169.0.0", "223.255.255.0")]  # fmt: skip
    assert all(a.is_global for a in public)
    assert not ipregion.special_keys(np.array([int(a) >> 8 for a in public])).any()


@pytest.mark.parametrize(
    ("region", "structure", "ids"),
    [
        ("中国|0|广东省|广州市|电信", 2, (44, 4401)),
        ("中国|0|北京|北京市|百度", 2, (11, 1101)),
        ("中国|0|香港|0|电讯盈科", 2, (81, None)),
        ("中国|0|0|0|0", 2, (None, None)),  # China, no province: absent
        ("美国|0|加利福尼亚|0|0", 2, (99, None)),
        ("0|0|0|内网IP|内网IP", 2, (None, None)),
        ("中国|广东省|深圳市|电信|CN", 3, (44, 4403)),  # ip2region 3.x order
        ("Hong Kong|0|0|HKBN|HK", 3, (81, None)),
        ("Taiwan|Taipei|Taipei|HiNet|TW", 3, (71, 7101)),
        ("United States|California|San Jose|xTom|US", 3, (99, None)),
        ("Australia|Queensland|Brisbane|0|AU", 3, (99, None)),
        ("", 3, (None, None)),
    ],
)
def test_region_strings(region: str, structure: int, ids: object) -> None:
    assert ipregion.region_ids(region, structure) == ids
