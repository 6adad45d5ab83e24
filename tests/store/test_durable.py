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


def test_atomic_write_installs_only_what_its_check_passes(tmp_path: Path) -> None:
    path = tmp_path / "x.bin"
    durable.atomic_write_bytes(path, b"old")

    def refuse(written: Path) -> None:
        assert written.read_bytes() == b"new"  # the check reads the flushed copy
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        durable.atomic_write(path, lambda fh: fh.write(b"new"), check=refuse)
    assert path.read_bytes() == b"old" and sorted(tmp_path.iterdir()) == [path]
    durable.atomic_write(path, lambda fh: fh.write(b"new"), check=lambda written: None)
    assert path.read_bytes() == b"new" and sorted(tmp_path.iterdir()) == [path]


def test_move_into_place_flushes_the_finished_file_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flushed: list[tuple[Path, bool]] = []
    monkeypatch.setattr(durable, "fsync_path", lambda p: flushed.append((p, p.exists())))
    done, path = tmp_path / "out" / "part-0.json", tmp_path / "rejects.ndjson"
    done.parent.mkdir()
    done.write_bytes(b"{}\n")
    durable.move_into_place(done, path)
    assert flushed == [(done, True)]
    assert path.read_bytes() == b"{}\n" and not done.exists()
