"""Backups taken while the store serves and ingests, and restores that check them."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest

from tests.server import ingest_headers, live_server
from userportrait.auth.store import AuthStore
from userportrait.engine import get_engine
from userportrait.ingest.pipeline import ingest_file
from userportrait.ingest.profiles import ingest_profiles_file
from userportrait.portrait.query import PortraitQuery
from userportrait.portrait.service import portrait
from userportrait.settings import Settings
from userportrait.store.backup import FORMAT_FILE, backup, restore
from userportrait.store.compact import compact
from userportrait.store.lake import Lake
from userportrait.synthetic.generate import GeneratorConfig, write_events, write_profiles

CONFIG = GeneratorConfig(users=500, days=8, end=dt.date(2026, 3, 31), apps=2, seed=5)
WINDOWS = [
    (CONFIG.end - dt.timedelta(days=back + span), CONFIG.end - dt.timedelta(days=back))
    for back in (0, 1, 3)
    for span in (0, 2, 6)
]


def answers(lake: Lake, engine: str = "incremental") -> list[Any]:
    eng = get_engine(engine, lake)
    try:
        return [portrait(PortraitQuery(a, b, e), eng) for a in CONFIG.appids for b, e in WINDOWS]
    finally:
        eng.close()


def parts(tmp_path: Path, pieces: int) -> list[Path]:
    """The generated events as ``pieces`` files (one batch each)."""
    src = tmp_path / "all.parquet"
    write_events(src, CONFIG)
    table = pq.read_table(src)
    step = -(-table.num_rows // pieces)
    out = []
    for i in range(pieces):
        out.append(tmp_path / f"part{i}.parquet")
        pq.write_table(table.slice(i * step, step), out[-1])
    return out


def settings_at(path: Path) -> Settings:
    return Settings(data_dir=path, duckdb_memory_limit_mb=512)


def file_batches(lake: Lake) -> dict[int, set[tuple[str, int]]]:
    """batch id -> its files (path, rows), as the catalog lists them."""
    out: dict[int, set[tuple[str, int]]] = {}
    with lake.catalog.connect() as con:
        for path, batch, rows in con.execute("SELECT path, batch_id, rows FROM files"):
            out.setdefault(batch, set()).add((path, rows))
    return out


def test_backup_of_an_idle_store_restores_every_answer_and_file(
    tmp_path: Path, lake: Lake, settings: Settings
) -> None:
    for part in parts(tmp_path, 3):
        assert ingest_file(lake, part).rejected == 0
    profiles = tmp_path / "profiles.ndjson"
    write_profiles(profiles, CONFIG)
    assert ingest_profiles_file(lake, profiles).accepted > 0
    AuthStore(settings.data_dir / "meta.sqlite").add_app(CONFIG.appids[0], "s3cret-s3cret")
    (settings.data_dir / "regions").mkdir()
    (settings.data_dir / "regions" / "ip2region.xdb").write_bytes(b"override")
    before = answers(lake)
    assert answers(lake, "reference") == before

    report = backup(settings, tmp_path / "bk")
    restore(tmp_path / "bk", tmp_path / "new")

    new = Lake(settings_at(tmp_path / "new"))
    assert report.catalog_version == new.catalog.version() == lake.catalog.version()
    assert report.state_version == report.catalog_version  # idle: the state had caught up
    assert report.linked > 0
    assert answers(new) == before
    assert file_batches(new) == file_batches(lake)
    assert new.catalog.profile_paths() == lake.catalog.profile_paths()
    assert AuthStore(new.root / "meta.sqlite").apps() == AuthStore(lake.root / "meta.sqlite").apps()
    for name in ("server.key", "regions/ip2region.xdb"):
        assert (new.root / name).read_bytes() == (lake.root / name).read_bytes()
    # Lake files are links into the backup (same file system), SQLite files copies.
    some = next(iter(new.catalog.files())).path
    assert os.path.samefile(new.root / some, tmp_path / "bk" / "data" / some)
    assert not os.path.samefile(new.root / "catalog.sqlite", tmp_path / "bk/data/catalog.sqlite")
    assert not (new.root / "write.lock").exists() and not (new.root / "wal").exists()


def test_backup_during_a_concurrent_ingest_holds_whole_batches(
    tmp_path: Path, lake: Lake, settings: Settings
) -> None:
    files = parts(tmp_path, 9)
    assert ingest_file(lake, files[0]).rejected == 0
    done = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for i, part in enumerate(files[1:]):
                assert ingest_file(lake, part).rejected == 0
                if i % 3 == 2:  # retired files deleted at once: links must hold them
                    compact(lake, min_files=2, grace_s=0.0)
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    taken = []
    while not done.is_set() or not taken:
        taken.append(backup(settings, tmp_path / f"bk{len(taken)}"))
    thread.join()
    assert errors == []
    final = lake.catalog.version()
    assert any(0 < r.catalog_version < final for r in taken)  # some taken mid-ingest
    # Restored: the first, the middle, the last and the first whose state lagged.
    lagged = [i for i, r in enumerate(taken) if r.state_version < r.catalog_version]
    for i in sorted({0, len(taken) // 2, len(taken) - 1, *lagged[:1]}):
        report = taken[i]
        restore(report.path, tmp_path / f"new{i}")
        new = Lake(settings_at(tmp_path / f"new{i}"))
        with new.catalog.connect() as con:
            events = con.execute("SELECT count(*) FROM batches WHERE sha256 IS NOT NULL")
            batches = events.fetchone()[0]
        # Every file of the snapshot is there, whole: its rows are the catalog's.
        for path, rows in {f for fs in file_batches(new).values() for f in fs}:
            assert pq.ParquetFile(new.root / path).metadata.num_rows == rows, path
        # Its portraits are those of a store built from exactly its event batches.
        fresh = Lake(settings_at(tmp_path / f"fresh{i}"))
        for part in files[:batches]:
            ingest_file(fresh, part)
        assert sum(f.rows for f in new.catalog.files()) == sum(
            f.rows for f in fresh.catalog.files()
        )
        assert answers(new) == answers(fresh, "reference")


def test_backup_of_a_live_server_receiving_events(tmp_path: Path) -> None:
    settings = settings_at(tmp_path / "data").replace(
        live_flush_interval_ms=50, wechat_limits=False
    )
    appid = CONFIG.appids[0]
    Lake(settings)
    AuthStore(settings.data_dir / "meta.sqlite").add_app(appid, "s3cret-s3cret")
    headers = ingest_headers(settings, appid)
    rows = pq.read_table(parts(tmp_path, 1)[0]).to_pylist()
    sent = [
        {
            "appid": appid,
            "openid": r["openid"],
            "ts": r["ts"].isoformat(),
            "province": r["province"],
            "gender": r["gender"],
            "platform": r["platform"],
        }
        for r in rows
        if r["appid"] == appid
    ][:2000]
    assert len(sent) == 2000
    taken = []
    with live_server(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        for start in range(0, len(sent), 200):
            res = client.post("/v1/events", json=sent[start : start + 200], headers=headers)
            assert res.status_code == 200 and res.json()["accepted"] == 200, res.text[:200]
            if start % 600 == 0:  # while flushes (every 50 ms) commit batches
                taken.append(backup(settings, tmp_path / f"bk{len(taken)}"))
            time.sleep(0.02)
    source = file_batches(Lake(settings))
    versions = [r.catalog_version for r in taken]
    assert versions == sorted(versions) and versions[-1] > 0 and len(taken) == 4
    # Restored: the first, the middle, the last and the first whose state lagged.
    lagged = [i for i, r in enumerate(taken) if r.state_version < r.catalog_version]
    for i in sorted({0, len(taken) // 2, len(taken) - 1, *lagged[:1]}):
        report = taken[i]
        restore(report.path, tmp_path / f"new{i}")
        new = Lake(settings_at(tmp_path / f"new{i}"))
        assert new.catalog.version() == report.catalog_version
        for batch, listed in file_batches(new).items():
            assert listed == source[batch]  # whole (nothing compacts 2,000 events)
            for path, n in listed:
                assert pq.ParquetFile(new.root / path).metadata.num_rows == n
        # The restored state agrees with its own lake (it catches up where it lagged).
        assert answers(new) == answers(new, "reference")


def _backup_of_three_batches(tmp_path: Path, lake: Lake, settings: Settings) -> Path:
    for part in parts(tmp_path, 3):
        ingest_file(lake, part)
    AuthStore(settings.data_dir / "meta.sqlite").add_app(CONFIG.appids[0], "s3cret-s3cret")
    backup(settings, tmp_path / "bk")
    return tmp_path / "bk"


def test_restore_refuses_a_missing_file_and_names_it(
    tmp_path: Path, lake: Lake, settings: Settings
) -> None:
    bk = _backup_of_three_batches(tmp_path, lake, settings)
    victim = lake.catalog.files()[1].path
    (bk / "data" / victim).unlink()
    with pytest.raises(Exception, match=f"backup damaged: data/{victim}: missing"):
        restore(bk, tmp_path / "new")
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("victim", ["lake", "server.key", "catalog.sqlite"])
def test_restore_refuses_a_truncated_file_and_names_it(
    tmp_path: Path, lake: Lake, settings: Settings, victim: str
) -> None:
    bk = _backup_of_three_batches(tmp_path, lake, settings)
    rel = lake.catalog.files()[0].path if victim == "lake" else victim
    path = bk / "data" / rel
    size = path.stat().st_size
    path.unlink()  # a link: truncating in place would truncate the live file too
    path.write_bytes(b"\0" * (size - 1))
    with pytest.raises(Exception, match=f"backup damaged: data/{rel}: {size - 1} bytes"):
        restore(bk, tmp_path / "new")


def test_restore_refuses_changed_bytes_and_a_damaged_database(
    tmp_path: Path, lake: Lake, settings: Settings
) -> None:
    bk = _backup_of_three_batches(tmp_path, lake, settings)
    key = bk / "data" / "server.key"
    key.write_bytes(bytes(b ^ 1 for b in key.read_bytes()))
    with pytest.raises(Exception, match="data/server.key: sha256 differs"):
        restore(bk, tmp_path / "new")
    parquet = bk / "data" / lake.catalog.files()[0].path
    raw = parquet.read_bytes()
    parquet.unlink()
    parquet.write_bytes(raw[:-4] + b"XXXX")
    with pytest.raises(Exception, match="not a whole Parquet file"):
        restore(bk, tmp_path / "new")


def test_restore_refuses_a_non_empty_target_and_an_unfinished_backup(
    tmp_path: Path, lake: Lake, settings: Settings
) -> None:
    bk = _backup_of_three_batches(tmp_path, lake, settings)
    target = tmp_path / "new"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(Exception, match=f"{target}: exists and is not empty"):
        restore(bk, target)
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    with pytest.raises(Exception, match="exists and is not empty"):
        backup(settings, bk)  # nor does a backup overwrite one
    (bk / FORMAT_FILE).unlink()
    with pytest.raises(Exception, match="not a finished userportrait backup"):
        restore(bk, tmp_path / "other")


def test_backup_leaves_a_consistent_sqlite_copy(
    tmp_path: Path, lake: Lake, settings: Settings
) -> None:
    bk = _backup_of_three_batches(tmp_path, lake, settings)
    assert not (bk / "data" / "catalog.sqlite-wal").exists()
    con = sqlite3.connect(bk / "data" / "catalog.sqlite")
    try:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert con.execute("SELECT count(*) FROM batches").fetchone() == (3,)
    finally:
        con.close()


def test_backup_waits_for_a_writer_mid_batch(
    tmp_path: Path, lake: Lake, settings: Settings
) -> None:
    """A writer holds ``write.lock`` from its files' rename to its commit: a snapshot taken
    meanwhile could list a batch whose state or compaction is half done."""
    ingest_file(lake, parts(tmp_path, 1)[0])
    finished: list[Any] = []
    with lake.write_lock():
        thread = threading.Thread(target=lambda: finished.append(backup(settings, tmp_path / "bk")))
        thread.start()
        time.sleep(0.5)
        assert finished == [] and thread.is_alive()
    thread.join(timeout=60)
    assert finished[0].catalog_version == 1
