"""What the CLI tests share: a runner whose default data directory is the test's own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.fixtures import A
from userportrait.cli import cli


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("USERPORTRAIT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("USERPORTRAIT_DUCKDB_MEMORY_LIMIT_MB", "512")
    return CliRunner()


def portrait_json(runner: CliRunner, *extra: str) -> dict[str, object]:
    res = runner.invoke(
        cli, ["portrait", "--appid", A, "--begin", "20240610", "--end", "2024-06-12", *extra]
    )
    assert res.exit_code == 0, res.output
    return json.loads(res.output)  # type: ignore[no-any-return]
