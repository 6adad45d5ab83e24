"""Many small apps built in one pass (``store/state/batch.py``, issue 30): the answers of
the reference engine and of each app stored alone, and one DuckDB pass for all of them."""

from __future__ import annotations

import datetime as dt
import json
import random
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pytest

from userportrait.engine import get_engine
from userportrait.ingest.pipeline import ingest_file
from userportrait.portrait.query import PortraitQuery
from userportrait.portrait.service import portrait
from userportrait.settings import Settings
from userportrait.store.lake import Lake
from userportrait.store.state import catch_up
from userportrait.store.state.app_update import PartitionSource
from userportrait.store.state.catching_up import remove_state
from userportrait.store.state.partitions import PartitionBuilder
from userportrait.synthetic.generate import GeneratorConfig, write_events

CONFIG = GeneratorConfig(
    users=6000, days=12, end=dt.date(2026, 3, 31), apps=120, seed=23, client_fields=True
)
END, START = CONFIG.end, CONFIG.start
D = dt.timedelta
WINDOWS = [(END, END), (END - D(6), END), (START, END), (START + D(2), START + D(5))]
# 20 random apps of the 120 (each ≈ 50 users).
APPS = random.Random(3).sample(CONFIG.appids, 20)


def _lake(root: Path) -> Lake:
    return Lake(Settings(data_dir=root, duckdb_memory_limit_mb=512))


def _split(src: Path, out: Path, where: str) -> Path:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'Asia/Shanghai'")
    con.execute(f"COPY (SELECT * FROM read_parquet('{src}') WHERE {where}) TO '{out}'")
    con.close()
    return out


def _flush(out: Path, shift: int = 0) -> Path:
    """A live flush's batch: late events of the newest day for 60 apps, new models and
    new users among them (NDJSON, as the flusher writes a WAL segment)."""
    lines = []
    for k, appid in enumerate(CONFIG.appids[::2]):
        for u in range(3):
            ts = f"{END.isoformat()}T23:{k % 60:02d}:{u + shift:02d}+08:00"
            user = f"o{(k * 50 + u + shift):09d}"
            rec: dict[str, Any] = {"appid": appid, "openid": user, "ts": ts}
            rec |= {"city": "拉萨", "gender": "f", "device": f"Flush Phone {(k + shift) % 7}"}
            lines.append(json.dumps(rec, ensure_ascii=False))
    out.write_text("\n".join(lines) + "\n", "utf-8")
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("many")
    src = root / "all.parquet"
    write_events(src, CONFIG)
    cut = f"TIMESTAMPTZ '{END.isoformat()} 00:00:00+08'"
    return {
        "all": src,
        "base": _split(src, root / "base.parquet", f"ts < {cut}"),
        "last": _split(src, root / "last.parquet", f"ts >= {cut}"),
        "flush": _flush(root / "flush.ndjson"),
    }


@pytest.fixture(scope="module")
def many(files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Lake:
    """120 apps: a bulk ingest, a day added, a live flush's batch."""
    lake = _lake(tmp_path_factory.mktemp("many-data"))
    for name in ("base", "last", "flush"):
        report = ingest_file(lake, files[name])
        assert report.rejected == 0, report.rejects[:3]
    return lake


def _answers(lake: Lake, engine: str, apps: list[str]) -> list[Any]:
    eng = get_engine(engine, lake)
    try:
        return [portrait(PortraitQuery(a, b, e), eng) for a in apps for b, e in WINDOWS]
    finally:
        eng.close()


def test_many_apps_equal_the_reference(many: Lake) -> None:
    assert _answers(many, "incremental", APPS) == _answers(many, "reference", APPS)


def test_many_apps_equal_each_app_alone(many: Lake, files: dict[str, Path], tmp_path: Path) -> None:
    for appid in APPS[:4]:
        alone = _lake(tmp_path / appid)
        for name in ("base", "last"):
            app_only = _split(
                files[name], tmp_path / f"{appid}-{name}.parquet", f"appid = '{appid}'"
            )
            ingest_file(alone, app_only)
        flush = [x for x in files["flush"].read_text("utf-8").splitlines() if appid in x]
        if flush:
            (tmp_path / f"{appid}.ndjson").write_text("\n".join(flush) + "\n", "utf-8")
            ingest_file(alone, tmp_path / f"{appid}.ndjson")
        assert _answers(alone, "incremental", [appid]) == _answers(many, "incremental", [appid])


def test_a_rebuild_builds_the_small_apps_in_one_pass(many: Lake) -> None:
    """Issue 30: a catch-up over 120 apps opens a handful of DuckDB sessions, not one (or
    more) per app; its state answers as the state built app by app does."""
    expected = _answers(many, "incremental", APPS)
    assert _rebuilt(many, PartitionBuilder) <= 2
    assert _answers(many, "incremental", APPS) == expected
    # App by app: a builder that is not PartitionBuilder itself takes no group pass.
    assert _rebuilt(many, lambda *a: PartitionBuilder(*a)) >= len(CONFIG.appids)
    assert _answers(many, "incremental", APPS) == expected


def test_a_live_flush_over_many_apps_takes_one_pass(many: Lake, tmp_path: Path) -> None:
    """A live flush's batch touching 60 apps' newest day merges through each app's overlay
    (``grows_newest``), with their day partitions built in one pass, not one per app; the
    answers equal the reference engine's."""
    shutil.copytree(many.root, tmp_path / "data")
    lake = _lake(tmp_path / "data")
    more = _flush(tmp_path / "again.ndjson", shift=7)
    count = 0
    real = lake.connect

    def counted() -> duckdb.DuckDBPyConnection:
        nonlocal count
        count += 1
        return real()

    lake.connect = counted  # type: ignore[method-assign]
    try:
        assert ingest_file(lake, more).accepted == 180
    finally:
        del lake.connect
    assert count <= 4  # (the pipeline's own, and one pass)
    touched = CONFIG.appids[::2][:10]
    assert _answers(lake, "incremental", touched) == _answers(lake, "reference", touched)


def _rebuilt(lake: Lake, partitions: PartitionSource) -> int:
    """Rebuild the state with ``partitions``; the DuckDB sessions the lake opened."""
    count = 0
    real = lake.connect

    def counted() -> duckdb.DuckDBPyConnection:
        nonlocal count
        count += 1
        return real()

    remove_state(lake)
    lake.connect = counted  # type: ignore[method-assign]
    try:
        with lake.write_lock():
            catch_up(lake, partitions=partitions)
    finally:
        del lake.connect
    return count
