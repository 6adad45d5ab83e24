"""The synthetic generator fits large populations in memory (issue 28: 30 M users for the
growth table), by structure, never by a timing or RSS measurement."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from userportrait.synthetic import generate
from userportrait.synthetic.generate import GeneratorConfig, _openids, _Population


def test_the_population_keeps_its_per_user_arrays_compact() -> None:
    """Every per-user attribute as drawn, in int16/int32 instead of numpy's int64: 33
    bytes a user (30 M users: 1 GB, not 2.7 GB); ``p`` stays float64 (it is compared
    with fresh uniform draws, so a float32 would change the events)."""
    cfg = GeneratorConfig(users=50_000, days=40, apps=1)
    pop = _Population(cfg, np.random.default_rng(cfg.seed))
    arrays = {k: v for k, v in vars(pop).items() if isinstance(v, np.ndarray)}
    assert {k: v.dtype for k, v in arrays.items() if v.dtype == np.int64} == {}
    assert arrays["p"].dtype == np.float64
    assert sum(v.nbytes for v in arrays.values()) / cfg.users <= 34


def test_openids_are_built_as_one_buffer_with_the_usual_text() -> None:
    users = np.array([0, 7, 123_456_789, 999_999_999, 42], dtype=np.int64)
    assert _openids(users).to_pylist() == [f"o{u:09d}" for u in users.tolist()]
    assert _openids(users[:0]).to_pylist() == []
    wide = np.array([1_000_000_000, 5], dtype=np.int64)  # past nine digits: as an f-string
    assert _openids(wide).to_pylist() == ["o1000000000", "o000000005"]


def test_a_day_is_written_one_row_group_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A day larger than a row group goes to the writer in row-group chunks, the file
    holding every event of every day in order."""
    monkeypatch.setattr(generate, "ROW_GROUP", 1000)
    cfg = GeneratorConfig(users=20_000, days=3, apps=1)
    path = tmp_path / "e.parquet"
    n = generate.write_events(path, cfg)
    meta = pq.ParquetFile(path).metadata
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    days = [t.num_rows for t in generate.generate_days(cfg)]
    assert sum(sizes) == n == sum(days)
    assert max(sizes) == 1000 and meta.num_row_groups >= sum(-(-d // 1000) for d in days)
    ts = pq.read_table(path, columns=["ts"]).column("ts").to_pylist()
    assert ts == sorted(ts)
