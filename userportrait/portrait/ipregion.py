"""Province and city from a visitor's IP address (docs/regions.md), via an ip2region xdb database.

Rules (docs/regions.md):

* The region comes from the address's **prefix** (/24 for IPv4, /48 for IPv6), looked up
  at the prefix's first address, so the prefix kept in the lake re-derives exactly the
  region ingest wrote. ip2region's segments rarely split inside a /24.
* An unparseable ``ip`` is absent. An IPv4-mapped IPv6 address (``::ffff:1.2.3.4``) is its
  IPv4 address. Private, loopback, link-local, shared, documentation, multicast and
  reserved IPv4 ranges (``SPECIAL_V4``) are absent. IPv6 has a prefix but no region: the
  shipped database is IPv4 only.
* A region string maps through ``normalize.resolve_region``: Chinese provinces and cities
  (Hong Kong, Macau, Taiwan included) to their GB/T 2260 ids; another country to 99
  (其他) with no city; no country (``内网IP``, ``0``) to absent.

Two forms of the lookup, kept equal by ``tests/portrait/test_ipregion.py``: ``IpDatabase``
decodes the xdb's segment index once into numpy arrays and maps many /24 keys at a time
(ingest); ``reference_region`` asks ip2region's official searcher one prefix at a time
(the reference engine).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import struct
import threading
import unicodedata
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Final

import numpy as np

from userportrait.portrait import normalize, regions

Ids = tuple[int | None, int | None]
IntArray = np.ndarray[Any, np.dtype[np.int64]]

#: Where ``regions ip-db`` installs a database; it overrides the shipped one.
ACTIVE_DB: Final = Path("regions") / "ip2region.xdb"
#: A well-known address every usable database places in China (114DNS, 南京).
PROBE_IP: Final = "114.114.114.114"

#: IPv4 ranges that are no visitor's public address (IANA special-purpose registry).
SPECIAL_V4: Final = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
        "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15",
        "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    )
)  # fmt: skip
#: The same ranges as inclusive ranges of /24 keys (address >> 8).
_SPECIAL_KEYS: Final = tuple(
    (int(n.network_address) >> 8, int(n.broadcast_address) >> 8) for n in SPECIAL_V4
)
#: What DuckDB's ``trim`` removes (Unicode space separators), as ``ingest/records.py`` strips.
_SPACES: Final = "".join(chr(c) for c in range(0x3001) if unicodedata.category(chr(c)) == "Zs")
_HEADER_BYTES: Final = 256
#: The vector index after the header: (first, end) segment pointers per /16 block.
_VECTOR_BYTES: Final = 256 * 256 * 8
#: A larger file is refused unread (ip2region's IPv4 xdb is about 11 MB).
MAX_DB_BYTES: Final = 1 << 30
#: Fields of a region string (structure 2: 国家|区域|省份|城市|ISP; 3: 国家|省份|城市|ISP|ISO).
_REGION_FIELDS: Final = 5
_V4_INDEX: Final = np.dtype([("start", "<u4"), ("end", "<u4"), ("len", "<u2"), ("ptr", "<u4")])
_CHINA: Final = {"中国", "China"}
#: ISO codes in ip2region 3.x strings whose region is a Chinese province-level division.
_ISO_PROVINCE: Final = {"CN": None, "HK": "81", "MO": "82", "TW": "71"}


class IpDbError(ValueError):
    """A file that is not a usable ip2region IPv4 xdb database."""


def shipped_db() -> Path:
    """The database shipped in the package (ip2region data of 2024-02-28, docs/regions.md)."""
    return Path(str(resources.files("userportrait") / "data" / "ip2region.xdb"))


def active_db(data_dir: Path) -> Path:
    """``DATA_DIR/regions/ip2region.xdb`` when ``regions ip-db`` installed one, else shipped."""
    installed = data_dir / ACTIVE_DB
    return installed if installed.exists() else shipped_db()


# --- addresses ---------------------------------------------------------------------------


def parse_ip(raw: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address, or None when absent or unparseable (never a reject)."""
    if raw is None:
        return None
    text = raw.strip(_SPACES)
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def prefix_of(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """The /24 (IPv4) or /48 (IPv6) network holding ``addr``, as kept in the lake."""
    bits = 24 if addr.version == 4 else 48
    return str(ipaddress.ip_network(f"{addr}/{bits}", strict=False))


def special_keys(keys: IntArray) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """Which /24 keys lie in ``SPECIAL_V4``."""
    mask = np.zeros(len(keys), dtype=bool)
    for lo, hi in _SPECIAL_KEYS:
        mask |= (keys >= lo) & (keys <= hi)
    return mask


# --- region strings ----------------------------------------------------------------------


def region_ids(region: str, structure: int) -> Ids:
    """(province id, city id) of an xdb region string (field order by xdb ``structure``).

    Structure 2: ``国家|区域|省份|城市|ISP`` (中国|0|广东省|广州市|电信); 3:
    ``国家|省份|城市|ISP|ISO`` (中国|广东省|深圳市|电信|CN). ``0`` is an empty field.
    """
    fields = [None if f in ("", "0") else f for f in region.split("|")]
    fields += [None] * (5 - len(fields))
    if structure >= 3:
        country, province, city, iso = fields[0], fields[1], fields[2], fields[4]
    else:
        country, province, city, iso = fields[0], fields[2], fields[3], None
    if iso in _ISO_PROVINCE:
        province = _ISO_PROVINCE[iso] or province
    elif country not in _CHINA:
        return (None, None) if country is None else (regions.OTHER_PROVINCE, None)
    if province is None:
        return None, None  # China, no province: as good as no answer
    return normalize.resolve_region(province, city)


# --- the vectorised lookup (ingest) ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IpDatabase:
    """An xdb's IPv4 segments as arrays: ``starts`` sorted, one region row each."""

    path: Path
    structure: int
    created: dt.datetime
    starts: IntArray  # first address of each segment
    province: IntArray  # -1 = absent
    city: IntArray  # -1 = absent

    @property
    def data_date(self) -> dt.date:
        return self.created.date()

    def lookup_keys(self, keys: IntArray) -> tuple[IntArray, IntArray]:
        """Province and city ids (-1 = absent) of /24 keys (address >> 8)."""
        keys = np.asarray(keys, dtype=np.int64)
        idx = np.searchsorted(self.starts, keys << 8, side="right") - 1
        special = special_keys(keys)
        province = np.where(special, -1, self.province[idx])
        city = np.where(special, -1, self.city[idx])
        return province, city


_lock = threading.Lock()


def load_db(path: Path) -> IpDatabase:
    """The decoded database at ``path`` (kept per path, size and modification time)."""
    stat = path.stat()
    with _lock:
        return _cached(path, stat.st_size, stat.st_mtime_ns)


@cache
def _cached(path: Path, _size: int, _mtime_ns: int) -> IpDatabase:
    return decode_db(path)


def decode_db(path: Path) -> IpDatabase:
    """Read, check and decode the xdb at ``path``; IpDbError says why it is not usable.

    The size and the header are checked before the rest is read (a 4 GB file was read
    whole before its header was refused), then the whole structure (``_check_structure``):
    an xdb has no checksum, and one with flipped bytes would otherwise install silently.
    """
    try:
        size = path.stat().st_size
        if size < _HEADER_BYTES + _VECTOR_BYTES:
            raise IpDbError(f"{path}: too small to be an ip2region xdb ({size} bytes)")
        if size > MAX_DB_BYTES:
            raise IpDbError(
                f"{path}: too large to be an ip2region xdb ({size} bytes; at most {MAX_DB_BYTES})"
            )
        with path.open("rb") as fh:
            head = fh.read(_HEADER_BYTES)
            structure, created, first, last, ip_version = _header(path, head, size)
            if ip_version != 4:
                raise IpDbError(f"{path}: an IPv6 xdb; only IPv4 databases are supported")
            data = head + fh.read(size - len(head))
    except OSError as exc:
        raise IpDbError(f"{path}: cannot read: {exc.strerror}") from None
    if len(data) != size:
        raise IpDbError(f"{path}: changed while being read")
    count = (last - first) // _V4_INDEX.itemsize + 1
    segments = np.frombuffer(data, dtype=_V4_INDEX, count=count, offset=first)
    ptr_len = (segments["ptr"].astype(np.int64) << 16) | segments["len"]
    unique, inverse = np.unique(ptr_len, return_inverse=True)
    _check_structure(path, data, segments, unique >> 16, unique & 0xFFFF, first)
    ids = [region_ids(_text(path, data, int(u) >> 16, int(u) & 0xFFFF), structure) for u in unique]
    pids = np.array([-1 if p is None else p for p, _ in ids], dtype=np.int64)
    cids = np.array([-1 if c is None else c for _, c in ids], dtype=np.int64)
    inverse = inverse.reshape(-1)
    return IpDatabase(
        path=path,
        structure=structure,
        created=created,
        starts=segments["start"].astype(np.int64),
        province=pids[inverse],
        city=cids[inverse],
    )


def _header(path: Path, head: bytes, size: int) -> tuple[int, dt.datetime, int, int, int]:
    structure, _policy, created, first, last, ip_version = struct.unpack_from("<HHIIIH", head, 0)
    if structure not in (2, 3):
        raise IpDbError(f"{path}: not an ip2region xdb (structure version {structure})")
    ip_version = 4 if structure == 2 else ip_version
    step = _V4_INDEX.itemsize if ip_version == 4 else 38
    if (
        ip_version not in (4, 6)
        or not (_HEADER_BYTES + _VECTOR_BYTES <= first <= last < size)
        or (last - first) % step
    ):
        raise IpDbError(f"{path}: not an ip2region xdb (bad segment index)")
    return structure, dt.datetime.fromtimestamp(created, dt.UTC), first, last, ip_version


def _check_structure(
    path: Path, data: bytes, segments: Any, ptrs: IntArray, lens: IntArray, first: int
) -> None:
    """Every index entry of an IPv4 xdb, so a flipped byte in an index is refused:

    * the segments are sorted, each start <= end, and together cover 0.0.0.0 to
      255.255.255.255 without gap or overlap;
    * each region pointer lies between the vector index and the segment index, and no two
      distinct region strings overlap (a pointer into the middle of one does);
    * each vector-index entry (one per /16) points at segments, its first one holding the
      /16's first address and its last one its last address (ip2region's searcher uses it).

    The region strings themselves must decode as UTF-8 with 5 fields (``_text``).
    """
    starts = segments["start"].astype(np.int64)
    ends = segments["end"].astype(np.int64)
    if not (
        starts[0] == 0
        and ends[-1] == 0xFFFFFFFF
        and bool(np.all(starts <= ends))
        and bool(np.all(starts[1:] == ends[:-1] + 1))
    ):
        raise IpDbError(f"{path}: damaged ip2region xdb (segments out of order or with gaps)")
    if not (
        ptrs[0] >= _HEADER_BYTES + _VECTOR_BYTES
        and ptrs[-1] + lens[-1] <= first
        and bool(np.all(ptrs[:-1] + lens[:-1] <= ptrs[1:]))
    ):
        raise IpDbError(f"{path}: damaged ip2region xdb (region pointers out of place)")
    vector = np.frombuffer(data, dtype="<u4", count=256 * 256 * 2, offset=_HEADER_BYTES)
    lo, hi = vector[0::2].astype(np.int64), vector[1::2].astype(np.int64)
    step = _V4_INDEX.itemsize
    end_of_index = first + len(starts) * step
    aligned = ((lo - first) % step == 0) & ((hi - first) % step == 0)
    if not bool(np.all(aligned & (first <= lo) & (lo < hi) & (hi <= end_of_index))):
        raise IpDbError(f"{path}: damaged ip2region xdb (vector index)")
    block = np.arange(256 * 256, dtype=np.int64) << 16
    first_seg, last_seg = (lo - first) // step, (hi - first) // step - 1
    if not (bool(np.all(starts[first_seg] <= block)) and bool(np.all(ends[last_seg] >= block + 0xFFFF))):  # fmt: skip
        raise IpDbError(f"{path}: damaged ip2region xdb (vector index)")


def _text(path: Path, data: bytes, ptr: int, length: int) -> str:
    try:
        text = data[ptr : ptr + length].decode("utf-8")
    except UnicodeDecodeError:
        raise IpDbError(f"{path}: damaged ip2region xdb (a region is not UTF-8)") from None
    if text.count("|") != _REGION_FIELDS - 1:
        raise IpDbError(f"{path}: damaged ip2region xdb (a region without {_REGION_FIELDS} fields)")
    return text


def map_texts(texts: list[str], db: IpDatabase | None) -> list[tuple[str, str | None, Ids]]:
    """(text, prefix, ids) of ip texts that are not plain dotted IPv4 (IPv6, mapped IPv4,
    garbage): the few distinct values ingest sends through Python."""
    out: list[tuple[str, str | None, Ids]] = []
    for text in texts:
        addr = parse_ip(text)
        if addr is None:
            out.append((text, None, (None, None)))
            continue
        ids: Ids = (None, None)
        if addr.version == 4 and db is not None:
            p, c = db.lookup_keys(np.array([int(addr) >> 8]))
            ids = (_opt(p[0]), _opt(c[0]))
        out.append((text, prefix_of(addr), ids))
    return out


def _opt(value: Any) -> int | None:
    return None if value < 0 else int(value)


# --- the official binding (reference engine, validation) --------------------------------


class ReferenceLookup:
    """Prefix -> ids with ip2region's official searcher, one prefix at a time (cached)."""

    def __init__(self, path: Path) -> None:
        import ip2region.searcher as xdb
        import ip2region.util as util

        data = path.read_bytes()
        self.structure = struct.unpack_from("<H", data, 0)[0]
        self._searcher = xdb.new_with_buffer(util.IPv4, data)
        self._seen: dict[str | None, Ids] = {}

    def region(self, prefix: str | None) -> Ids:
        if prefix not in self._seen:
            self._seen[prefix] = self._region(prefix)
        return self._seen[prefix]

    def search(self, ip: str) -> str:
        return str(self._searcher.search(ip))

    def _region(self, prefix: str | None) -> Ids:
        if prefix is None:
            return None, None
        network = ipaddress.ip_network(prefix)
        first = network.network_address
        if first.version != 4 or any(first in n for n in SPECIAL_V4):
            return None, None
        return region_ids(self.search(str(first)), self.structure)


# --- checking a newer database (``store/regions.py`` installs it) ------------------------


def check_copy(staging: Path, source: Path) -> None:
    """Refuse (IpDbError naming ``source``) a copy ingest could not use."""

    def refused(why: str) -> IpDbError:
        return IpDbError(f"{source}: {why}")

    try:
        db = decode_db(staging)
    except IpDbError as exc:
        raise refused(str(exc).removeprefix(f"{staging}: ")) from None
    try:
        official = ReferenceLookup(staging).region(f"{PROBE_IP}/32")
    except Exception as exc:  # the binding's own errors are plain exceptions
        raise refused(f"ip2region cannot search it: {exc}") from None
    p, c = db.lookup_keys(np.array([int(ipaddress.IPv4Address(PROBE_IP)) >> 8]))
    if official[0] in (None, regions.OTHER_PROVINCE) or official != (_opt(p[0]), _opt(c[0])):
        raise refused(f"{PROBE_IP} is not in China in this database")
