"""``userportrait regions ip-db`` and ``generate --ips`` (issue 17)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from userportrait.cli import cli
from userportrait.portrait import ipregion

SHIPPED = ipregion.shipped_db()


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("USERPORTRAIT_DATA_DIR", str(tmp_path / "data"))
    return CliRunner()


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


def test_generate_ips_then_ingest(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "ips.ndjson"
    res = runner.invoke(
        cli, ["generate", str(out), "--users", "300", "--days", "3", "--apps", "1", "--ips",
              "--end", "20260131", "-q"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    first = json.loads(out.read_text("utf-8").splitlines()[0])
    assert "ip" in first and "province" not in first and "city" not in first
    res = runner.invoke(cli, ["ingest", "-q", str(out)])
    assert res.exit_code == 0 and " 0 rejected" in res.output, res.output
