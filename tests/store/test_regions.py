"""Installing a newer ip2region database: checked, then durably in place (issue 17)."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from userportrait.portrait import ipregion
from userportrait.store import durable
from userportrait.store.regions import install_db


def test_install_checks_and_replaces(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert ipregion.active_db(data) == ipregion.shipped_db()
    db = install_db(ipregion.shipped_db(), data)
    assert db.path == data / "regions" / "ip2region.xdb" == ipregion.active_db(data)
    assert db.path.read_bytes() == ipregion.shipped_db().read_bytes()


def _xdb_like(tmp_path: Path, header: bytes, size: int = 600_000) -> Path:
    path = tmp_path / "x.xdb"
    path.write_bytes(header + b"\0" * (size - len(header)))
    return path


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"hello", "too small to be an ip2region xdb"),
        (struct.pack("<HHIII", 9, 1, 0, 600, 614), "structure version 9"),
        (struct.pack("<HHIII", 2, 1, 0, 600, 900_000), "bad segment index"),
        (struct.pack("<HHIIIH", 3, 1, 0, 530_000, 530_038, 6), "only IPv4 databases"),
        # a well-formed index of one segment (all of IPv4 -> no region): no China in it
        (struct.pack("<HHIII", 2, 1, 0, 530_000, 530_000), "is not in China"),
    ],
)
def test_install_refuses_a_bad_file(tmp_path: Path, content: bytes, message: str) -> None:
    src = _xdb_like(tmp_path, content) if len(content) > 5 else tmp_path / "x.xdb"
    if len(content) <= 5:
        src.write_bytes(content)
    else:
        raw = bytearray(src.read_bytes())
        # one segment 0.0.0.0-255.255.255.255 (at offset 530000) with a region of no
        # country, the first thing after the vector index
        region = "0|0|0|内网IP|内网IP".encode()
        raw[524_544 : 524_544 + len(region)] = region
        struct.pack_into("<IIHI", raw, 530_000, 0, 0xFFFFFFFF, len(region), 524_544)
        for i in range(256 * 256):  # every vector index cell points at it
            struct.pack_into("<II", raw, 256 + i * 8, 530_000, 530_000 + 14)
        src.write_bytes(bytes(raw))
    with pytest.raises(ipregion.IpDbError, match=message):
        install_db(src, tmp_path / "data")
    assert not (tmp_path / "data" / "regions" / "ip2region.xdb").exists()


def test_install_flushes_the_checked_copy_before_it_replaces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flushed: list[str] = []
    real = os.fsync

    def record(fd: int) -> None:
        flushed.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(durable.os, "fsync", record)
    db = install_db(ipregion.shipped_db(), tmp_path / "data")
    assert flushed == [f"{db.path}.tmp"]
    assert not Path(f"{db.path}.tmp").exists()
