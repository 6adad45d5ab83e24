"""Compaction: a partition's small files merged into one give exactly the same answers."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from userportrait.cli import cli
from userportrait.engine import get_engine
from userportrait.ingest import pipeline as pipeline_mod
from userportrait.ingest.live import LiveIngest
from userportrait.ingest.pipeline import ingest_file
from userportrait.portrait.query import PortraitQuery
from userportrait.portrait.service import portrait
from userportrait.store import compact as compact_mod
from userportrait.store.compact import compact
from userportrait.store.lake import Lake
from userportrait.synthetic.generate import GeneratorConfig, write_events

CONFIG = GeneratorConfig(users=600, days=6, end=dt.date(2026, 3, 31), apps=2, seed=3)
WINDOWS = [(CONFIG.end, CONFIG.end), (CONFIG.end - dt.timedelta(days=6), CONFIG.end)]


def answers(lake: Lake) -> list[Any]:
    out = []
    for name in ("duckdb", "sql", "reference"):
        eng = get_engine(name, lake)
        try:
            out.append(
                [portrait(PortraitQuery(a, b, e), eng) for a in CONFIG.appids for b, e in WINDOWS]
            )
        finally:
            eng.close()
    assert out[0] == out[1] == out[2]
    return out[0]


def small_files(tmp_path: Path, lake: Lake, pieces: int) -> None:
    """The generated events ingested as ``pieces`` files, so every day gets many files."""
    src = tmp_path / "all.parquet"
    write_events(src, CONFIG)
    table = pq.read_table(src)
    step = -(-table.num_rows // pieces)
    for i in range(pieces):
        part = tmp_path / f"part{i}.parquet"
        pq.write_table(table.slice(i * step, step), part)
        assert ingest_file(lake, part).rejected == 0


def partitions(lake: Lake) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for f in lake.catalog.files():
        counts[(f.appid, f.day)] = counts.get((f.appid, f.day), 0) + 1
    return counts


def test_compaction_keeps_every_answer_and_row(tmp_path: Path, lake: Lake) -> None:
    small_files(tmp_path, lake, 12)
    before, version = answers(lake), lake.catalog.version()
    rows = sum(f.rows for f in lake.catalog.files())
    many = [k for k, n in partitions(lake).items() if n >= 2]
    assert many

    report = compact(lake, min_files=2)

    assert set(partitions(lake).values()) == {1}
    assert report.partitions == len(many)
    assert sum(f.rows for f in lake.catalog.files()) == rows
    assert lake.catalog.version() == version + report.partitions
    # The state skips compactions: they change files, never events.
    assert lake.catalog.touched(version, lake.catalog.version()) == []
    assert answers(lake) == before
    # Replaced files stay for readers that listed them, until the grace period is over.
    retired = lake.catalog.retired(before=float("inf"))
    assert len(retired) == report.files_merged
    assert all((lake.root / p).exists() for p in retired)
    assert compact(lake, min_files=2, grace_s=0).deleted == len(retired)
    assert not any((lake.root / p).exists() for p in retired)
    assert answers(lake) == before


def test_event_ids_still_deduplicated_after_compaction(tmp_path: Path, lake: Lake) -> None:
    ev = {"appid": "wx0000000000000001", "ts": "2026-03-30T10:00:00+08:00", "province": "广东"}
    for i in range(3):
        path = tmp_path / f"b{i}.ndjson"
        path.write_text(json.dumps({**ev, "openid": f"o{i}", "event_id": f"e{i}"}) + "\n")
        ingest_file(lake, path)
    compact(lake, min_files=2)
    again = tmp_path / "again.ndjson"
    again.write_text(json.dumps({**ev, "openid": "o9", "event_id": "e1"}) + "\n")
    assert ingest_file(lake, again).accepted == 0


def test_live_flushes_compact_today(lake: Lake) -> None:
    live = LiveIngest(lake, flush_interval_ms=3_600_000, compact_files=3)
    live.start()
    try:
        ts = "2026-03-30T10:00:00+08:00"
        for i in range(7):
            report, done = live.submit(
                [{"appid": "wx0000000000000001", "openid": f"o{i}", "ts": ts}], None
            )
            assert report.accepted == 1
            done.result(timeout=10)
            live.flush()
            assert max(partitions(lake).values()) < 3
    finally:
        live.stop()
    query = PortraitQuery("wx0000000000000001", dt.date(2026, 3, 30), dt.date(2026, 3, 30))
    body = portrait(query, get_engine("duckdb", lake))
    assert sum(r["value"] for r in body["visit_uv"]["genders"]) == 7


def test_compact_cli(tmp_path: Path, lake: Lake) -> None:
    small_files(tmp_path, lake, 3)
    before = answers(lake)
    out = CliRunner().invoke(cli, ["compact", "--data-dir", str(lake.root)])
    assert out.exit_code == 0, out.output
    assert out.output.startswith("compacted ")
    assert set(partitions(lake).values()) == {1}
    assert answers(lake) == before


def test_nothing_to_compact(lake: Lake) -> None:
    report = compact(lake)
    assert (report.partitions, report.deleted, lake.catalog.version()) == (0, 0, 0)


def test_large_files_are_left_alone(
    tmp_path: Path, lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A busy day's compaction costs its small files only (issue 14): with "large" at 3
    # rows, the 4-row file stays; the four 1-row files become one.
    monkeypatch.setattr(compact_mod, "LARGE_ROWS", 3)
    ev = {"appid": "wx0000000000000001", "ts": "2026-03-30T10:00:00+08:00"}
    for i, n in enumerate((4, 1, 1, 1, 1)):
        path = tmp_path / f"b{i}.ndjson"
        path.write_text("".join(json.dumps({**ev, "openid": f"o{i}-{k}"}) + "\n" for k in range(n)))
        ingest_file(lake, path)
    large = [f.path for f in lake.catalog.files() if f.rows == 4]
    report = compact(lake, min_files=4)
    assert (report.partitions, report.files_merged, report.rows) == (1, 4, 4)
    assert sorted(f.rows for f in lake.catalog.files()) == [4, 4]
    assert large[0] in {f.path for f in lake.catalog.files()}
    assert compact(lake, min_files=2).partitions == 0  # one small file left: nothing to do


def test_a_compaction_brings_the_state_up_to_date_first(
    tmp_path: Path, lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A batch the state has not seen (its update crashed) must not vanish into a
    # compaction, which the state skips.
    ev = {"appid": "wx0000000000000001", "ts": "2026-03-30T10:00:00+08:00"}
    real = pipeline_mod.update_state
    for i in range(3):
        if i == 2:
            monkeypatch.setattr(pipeline_mod, "update_state", lambda *_a, **_k: None)
        path = tmp_path / f"b{i}.ndjson"
        path.write_text(json.dumps({**ev, "openid": f"o{i}"}) + "\n")
        ingest_file(lake, path)
    monkeypatch.setattr(pipeline_mod, "update_state", real)
    assert compact(lake, min_files=2).partitions == 1
    query = PortraitQuery("wx0000000000000001", dt.date(2026, 3, 30), dt.date(2026, 3, 30))
    body = portrait(query, get_engine("duckdb", lake))
    assert sum(r["value"] for r in body["visit_uv"]["genders"]) == 3
