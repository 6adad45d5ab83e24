"""Lake files and their directories are flushed before the catalog names them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import load
from userportrait.store import durable
from userportrait.store.lake import Lake


def test_fsync_tree_flushes_files_and_each_directory_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flushed: list[Path] = []
    monkeypatch.setattr(durable, "fsync_path", flushed.append)
    a = tmp_path / "events" / "appid=A" / "day=1" / "x.parquet"
    b = tmp_path / "events" / "appid=A" / "day=2" / "y.parquet"
    durable.fsync_tree([a, b], tmp_path)
    assert flushed[:2] == [a, b]
    assert sorted(flushed[2:]) == sorted(
        [a.parent, b.parent, a.parent.parent, tmp_path / "events", tmp_path]
    )


def test_ingest_flushes_every_lake_file_before_commit(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    flushed: list[Path] = []
    real = durable.fsync_path

    def record(path: Path) -> None:
        flushed.append(path)
        real(path)

    monkeypatch.setattr(durable, "fsync_path", record)
    events = [
        {"appid": "wxd", "openid": "u", "ts": f"2024-06-{d:02d}T10:00:00+08:00"} for d in (1, 2)
    ]
    load(lake, events)
    files = {lake.root / f.path for f in lake.files("wxd")}
    assert len(files) == 2 and files <= set(flushed)
    assert lake.root in flushed
