"""``userportrait regions ip-db``: show, install, refuse (docs/regions.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from userportrait.cli import cli
from userportrait.portrait import ipregion

SHIPPED = ipregion.shipped_db()


def test_ip_db_shows_installs_and_refuses(runner: CliRunner, tmp_path: Path) -> None:
    res = runner.invoke(cli, ["regions", "ip-db"])
    assert res.exit_code == 0, res.output
    assert res.output == f"in use: {SHIPPED} (shipped), data of 2024-02-28\n"
    newer = tmp_path / "newer.xdb"
    newer.write_bytes(SHIPPED.read_bytes())
    res = runner.invoke(cli, ["regions", "ip-db", str(newer)])
    assert res.exit_code == 0, res.output
    active = tmp_path / "data" / "regions" / "ip2region.xdb"
    assert res.output == (
        f"installed {newer} (ip2region xdb 2.0, data of 2024-02-28)\n"
        f"in use: {active}, data of 2024-02-28\n"
    )
    bad = tmp_path / "bad.xdb"
    bad.write_bytes(b"\0" * 100)
    res = runner.invoke(cli, ["regions", "ip-db", str(bad)])
    assert res.exit_code == 1
    assert "error: " in res.output and "too small to be an ip2region xdb" in res.output
    assert active.read_bytes() == SHIPPED.read_bytes()  # the installed one stays


def test_a_huge_file_is_refused_unread(runner: CliRunner, tmp_path: Path) -> None:
    """A 4 GB file was once read whole before its header was refused."""
    import tracemalloc

    huge = tmp_path / "huge.xdb"
    with huge.open("wb") as fh:  # sparse: a good header, then 4 GiB of nothing
        fh.write(SHIPPED.read_bytes()[:256])
        fh.truncate(4 << 30)
    bad = tmp_path / "bad-header.xdb"
    with bad.open("wb") as fh:  # under the size limit; its header is wrong
        fh.write(b"\x07\x00" + b"\0" * 254)
        fh.truncate(600 << 20)
    tracemalloc.start()
    try:
        res = runner.invoke(cli, ["regions", "ip-db", str(huge)])
        assert res.exit_code == 1
        assert (
            f"too large to be an ip2region xdb ({4 << 30} bytes; at most {1 << 30})" in res.output
        )
        res = runner.invoke(cli, ["regions", "ip-db", str(bad)])
        assert res.exit_code == 1
        assert "not an ip2region xdb (structure version 7)" in res.output, res.output
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, peak  # the header only, never the file
    assert not (tmp_path / "data" / "regions").exists()


def test_a_damaged_database_is_refused_and_the_installed_one_kept(
    runner: CliRunner, tmp_path: Path
) -> None:
    """An xdb with 2,000 flipped bytes was once installed silently. The structure of
    every index entry and the region strings are checked first."""
    import random

    good = tmp_path / "good.xdb"
    good.write_bytes(SHIPPED.read_bytes())
    assert runner.invoke(cli, ["regions", "ip-db", str(good)]).exit_code == 0
    active = tmp_path / "data" / "regions" / "ip2region.xdb"
    data = bytearray(SHIPPED.read_bytes())
    rnd = random.Random(24)
    for pos in rnd.sample(range(256, len(data)), 2000):  # past the header (checked alone)
        data[pos] ^= rnd.randrange(1, 256)
    damaged = tmp_path / "damaged.xdb"
    damaged.write_bytes(bytes(data))
    res = runner.invoke(cli, ["regions", "ip-db", str(damaged)])
    assert res.exit_code == 1
    assert f"error: {damaged}: damaged ip2region xdb (" in res.output, res.output
    assert active.read_bytes() == SHIPPED.read_bytes()
    assert sorted(p.name for p in active.parent.iterdir()) == ["ip2region.xdb"]  # no staging


@pytest.mark.parametrize(
    ("where", "why"),
    [
        ("vector", "vector index"),  # one /16's pointers
        ("segment", "segments out of order or with gaps"),  # a segment's end
        ("pointer", "region pointers out of place"),  # a segment's region pointer
        ("region", "a region is not UTF-8"),  # a byte of a region string
    ],
)
def test_one_flipped_byte_in_each_part_is_found(where: str, why: str, tmp_path: Path) -> None:
    import struct

    data = bytearray(SHIPPED.read_bytes())
    first = struct.unpack_from("<I", data, 8)[0]
    at = {
        "vector": 256 + 8 * 1000 + 1,
        "segment": first + 14 * 5000 + 5,
        "pointer": first + 14 * 5000 + 12,
        "region": 256 + 256 * 256 * 8 + 1,
    }[where]
    data[at] ^= 0x80
    path = tmp_path / "one.xdb"
    path.write_bytes(bytes(data))
    with pytest.raises(ipregion.IpDbError, match=f"damaged ip2region xdb \\({why}\\)"):
        ipregion.decode_db(path)
