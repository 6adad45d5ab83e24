"""Building day partitions from the lake (``store/state/partitions.py``): every way of
matching events to users writes the same state."""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.store.state.support import (
    CONFIG,
    END,
    all_standard,
)
from userportrait.ingest.pipeline import ingest_file
from userportrait.settings import Settings
from userportrait.store import state as state_mod
from userportrait.store.lake import Lake
from userportrait.store.state import StateStore
from userportrait.store.state import partitions as state_partitions
from userportrait.store.state.manifest import app_dir


def test_events_find_their_uids_by_hash_or_by_openid_alike(
    generated: tuple[Path, list[Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build of many passes joins the events to their users on the openid's hash when no
    two users share one, else on the openid (a collision cannot be made here: forced)."""
    monkeypatch.setattr(state_partitions, "CHUNK_EVENTS", 1)  # a pass per day
    monkeypatch.setattr(state_partitions, "MAX_SLICES", 1)
    hashed: list[bool] = []
    check = state_partitions.PartitionBuilder._hash_uids

    def recorded(self: state_partitions.PartitionBuilder) -> bool:
        hashed.append(check(self))
        return hashed[-1]

    monkeypatch.setattr(state_partitions.PartitionBuilder, "_hash_uids", recorded)
    src, _ = generated
    lake = Lake(Settings(data_dir=tmp_path / "d", duckdb_memory_limit_mb=256))
    ingest_file(lake, src)
    assert hashed and all(hashed)  # (one build per appid)
    by_hash = all_standard(lake)
    monkeypatch.setattr(state_partitions.PartitionBuilder, "_hash_uids", lambda _self: False)
    StateStore(lake).rebuild()
    assert all_standard(lake) == by_hash


def test_a_day_in_one_join_writes_what_the_match_writes(
    generated: tuple[Path, list[Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A day added (one day, one pass) joins its events to the user dictionary once and
    numbers the misses; the larger builds' path matches the users first. The state files
    of the two are the same, bit for bit, new users (in no order in the file) included."""
    _, day_files = generated
    before = tmp_path / "before.parquet"
    pq.write_table(pa.concat_tables([pq.read_table(p) for p in day_files[:-1]]), before)
    last = pq.read_table(day_files[-1])
    strangers = last.slice(0, 60)
    ids = [f"new-{i:03d}" for i in random.Random(4).sample(range(60), 60)]
    strangers = strangers.set_column(
        strangers.schema.get_field_index("openid"), "openid", pa.array(ids)
    )
    newest = tmp_path / "newest.parquet"
    pq.write_table(pa.concat_tables([last, strangers]), newest)
    roots = [tmp_path / "one-join", tmp_path / "matched"]
    ingest_file(Lake(Settings(data_dir=roots[0], duckdb_memory_limit_mb=256)), before)
    shutil.copytree(roots[0], roots[1])
    matched: list[int] = []
    match = state_partitions.PartitionBuilder._match_users

    def counted(self: state_partitions.PartitionBuilder, *args: Any) -> None:
        matched.append(1)
        match(self, *args)

    monkeypatch.setattr(state_partitions.PartitionBuilder, "_match_users", counted)
    ingest_file(Lake(Settings(data_dir=roots[0], duckdb_memory_limit_mb=256)), newest)
    assert not matched
    monkeypatch.setattr(state_partitions, "CHUNK_EVENTS", 1)  # too large for one join ...
    monkeypatch.setattr(state_partitions, "MAX_SLICES", 1)  # ... and still one pass
    ingest_file(Lake(Settings(data_dir=roots[1], duckdb_memory_limit_mb=256)), newest)
    assert matched
    day = END.isoformat()
    met: set[str] = set()
    for appid in CONFIG.appids:
        dirs = [app_dir(r / "state", appid) for r in roots]
        apps = [state_mod.Manifest.read(r / "state").apps[appid] for r in roots]
        assert apps[0] == apps[1]
        app = apps[0]
        assert app.first_day is not None
        for name in (app.days[day], app.keys[day], app.heads[day], app.spans[day], app.first_day):
            assert (dirs[0] / name).read_bytes() == (dirs[1] / name).read_bytes(), name
        users = [
            sorted(
                (str(o), int(u))
                for f in app.users
                for o, u in zip(*pq.read_table(d / f).to_pydict().values(), strict=True)
            )
            for d in dirs
        ]
        assert users[0] == users[1]
        met |= {o for o, _ in users[0]}
    assert set(ids) <= met
