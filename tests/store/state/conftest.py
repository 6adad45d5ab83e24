"""The generated data set of the state's tests, written once for the package."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.store.state.support import CONFIG, split_days
from userportrait.synthetic.generate import write_events


@pytest.fixture(scope="package")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """(every event in one file, one file per Shanghai day)."""
    root = tmp_path_factory.mktemp("inc")
    src = root / "all.parquet"
    write_events(src, CONFIG)
    (root / "days").mkdir()
    return src, split_days(src, root / "days")
