from __future__ import annotations

import json
import subprocess
import sys
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


def ingest_in_a_fresh_process(src: Path, data_dir: Path) -> tuple[int, list[int], bool]:
    """Ingest ``src`` in a new Python process: (accepted, the rejected lines, whether pandas
    got imported: pyarrow's ``pa.array``/``pa.table`` import it, 0.2-0.5 s of a process)."""
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from userportrait.ingest.pipeline import ingest_file\n"
        "from userportrait.settings import Settings\n"
        "from userportrait.store.lake import Lake\n"
        f"lake = Lake(Settings(data_dir=Path({str(data_dir)!r})))\n"
        f"report = ingest_file(lake, Path({str(src)!r}))\n"
        "print(json.dumps([report.accepted, [r.line for r in report.rejects],"
        " 'pandas' in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    accepted, lines, pandas = json.loads(out.stdout.strip().splitlines()[-1])
    return int(accepted), [int(x) for x in lines], bool(pandas)
