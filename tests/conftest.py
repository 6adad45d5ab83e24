from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from userportrait.ingest.pipeline import IngestReport, ingest_file
from userportrait.settings import Settings
from userportrait.store.lake import Lake

pytest_plugins = ["tests.server", "tests.spark_support"]  # servers (issue 4), spark (issue 15)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", duckdb_memory_limit_mb=512)


@pytest.fixture
def lake(settings: Settings) -> Lake:
    return Lake(settings)


def write_ndjson(path: Path, events: Iterable[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events), "utf-8")
    return path


def load(lake: Lake, events: Iterable[dict[str, Any]], name: str = "events.ndjson") -> IngestReport:
    """Write ``events`` as NDJSON beside the data dir and ingest them."""
    path = lake.root.parent / name
    return ingest_file(lake, write_ndjson(path, events))
