"""``userportrait generate`` and ``demo --no-serve`` (CliRunner)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner, Result

from userportrait.auth.store import AuthStore
from userportrait.cli import cli


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_demo_prepares_reuses_and_prints(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    args = (
        "demo",
        "--data-dir",
        str(data),
        "--users",
        "1500",
        "--days",
        "8",
        "--port",
        "8123",
        "--no-serve",
    )
    first = run(*args)
    assert first.exit_code == 0, first.output
    out = first.output
    assert re.search(r"http://127\.0\.0\.1:8123/#code=[A-Za-z0-9_-]{32}", out)
    assert "AppID wx0000000000000001   AppSecret demo-secret" in out
    assert "/datacube/getweanalysisappiduserportrait?access_token=$T" in out
    key = re.search(r"IngestKey (upik_\S+)", out)
    assert key and AuthStore(data / "meta.sqlite").appid_for_ingest_key(key.group(1)) == (
        "wx0000000000000001"
    )
    assert f'/v1/events" -H "Authorization: Bearer {key.group(1)}" -d' in out
    assert [a for a, _ in AuthStore(data / "meta.sqlite").apps()] == [
        "wx0000000000000001", "wx0000000000000002"]  # fmt: skip
    assert not (data / "demo-events.parquet").exists()
    version = (
        (data / "lake" / "catalog.sqlite").stat().st_mtime if (data / "lake").exists() else None
    )
    again = run(*args)
    assert again.exit_code == 0 and "reused" in again.output
    if version is not None:
        assert (data / "lake" / "catalog.sqlite").stat().st_mtime == version
    # A directory that is not a demo's is never cleared.
    other = tmp_path / "mine"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    refused = run("demo", "--data-dir", str(other), "--no-serve")
    assert refused.exit_code == 1 and "not empty and not a demo directory" in refused.output
    assert (other / "keep.txt").exists()


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
