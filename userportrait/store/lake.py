"""The data directory: the Parquet event lake, its catalog and the writer lock.

Layout (docs/storage.md)::

    DATA_DIR/
      catalog.sqlite                       committed files, ingest log, apps, tokens
      events/appid=A/day=YYYY-MM-DD/*.parquet   normalised events, one file per batch
      first_seen/appid=A/*.parquet         first days of users first seen before an expiry
      rejects/*.ndjson                     every rejected record, with file, line, reason
      state/                               derived state kept by the incremental store
      _staging/                            a batch being written (removed on success)
"""

from __future__ import annotations

import fcntl
import os
import shutil
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from userportrait.portrait.dims import Dim
from userportrait.settings import Settings
from userportrait.store.catalog import Catalog, LakeFile
from userportrait.store.sqlite import private_dir

if TYPE_CHECKING:
    import duckdb

#: The lake column each portrait dimension is counted by (devices: the model string).
DIM_COLUMNS: dict[Dim, str] = {
    "province": "province_id",
    "city": "city_id",
    "genders": "gender_id",
    "platforms": "platform_id",
    "ages": "age_id",
    "devices": "device",
}


class Lake:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.data_dir
        private_dir(self.root)
        self.catalog = Catalog(self.root / "catalog.sqlite")

    @property
    def events_dir(self) -> Path:
        return self.root / "events"

    @property
    def rejects_dir(self) -> Path:
        return self.root / "rejects"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def staging_dir(self) -> Path:
        return self.root / "_staging"

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection configured for lake work (Shanghai time zone): a new session
        (its own temp tables) on the process's in-memory database for these settings."""
        tmp = self.root / "_tmp"
        tmp.mkdir(exist_ok=True)
        key = (self.settings.duckdb_memory_limit_mb, self.settings.duckdb_threads, str(tmp))
        con = _database(key).cursor()
        con.execute("SET TimeZone = 'Asia/Shanghai'")
        return con

    @contextmanager
    def write_lock(self) -> Iterator[None]:
        """Serialise writers (CLI ingests, the server's flusher) across processes."""
        with open(self.root / "write.lock", "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @contextmanager
    def try_write_lock(self) -> Iterator[bool]:
        """The writer lock if nobody holds it, else False at once (a reader that would
        catch up never waits for a writer: the writer publishes when it is done)."""
        with try_lock(self.root / "write.lock") as mine:
            yield mine

    def files(self, appid: str) -> list[LakeFile]:
        return self.catalog.files(appid)

    def paths(self, appid: str) -> list[str]:
        return [str(self.root / f.path) for f in self.catalog.files(appid)]

    def collect_garbage(self) -> int:
        """Remove staging leftovers and event files no batch committed; returns the count."""
        with self.write_lock():
            return self.collect_garbage_locked()

    def collect_garbage_locked(self) -> int:
        """``collect_garbage`` for a caller that holds the writer lock (every writer calls
        it before it writes, so a writer killed mid-batch leaves nothing for long).

        Files that compaction retired stay until their grace period ends (readers that
        listed them just before the swap may still read them).
        """
        removed = 0
        if self.staging_dir.exists():
            shutil.rmtree(self.staging_dir, ignore_errors=True)
        known = {f.path for f in self.catalog.files()}
        known.update(self.catalog.retired(before=float("inf")))
        if self.events_dir.exists():
            for path in self.events_dir.rglob("*.parquet"):
                if str(path.relative_to(self.root)) not in known:
                    path.unlink()
                    removed += 1
        profiles = self.root / "profiles"  # a profile batch killed before its commit
        if profiles.exists():
            listed = self.catalog.profile_paths()
            for path in profiles.rglob("*.parquet*"):
                if str(path.relative_to(self.root)) not in listed:
                    path.unlink()
                    removed += 1
        first_seen = self.root / "first_seen"  # an expiry killed before its commit
        if first_seen.exists():
            listed = {r.first_seen for r in self.catalog.retention().values() if r.first_seen}
            for path in first_seen.rglob("*.parquet"):
                if str(path.relative_to(self.root)) not in listed:
                    path.unlink()
                    removed += 1
        return removed


@contextmanager
def try_lock(path: Path) -> Iterator[bool]:
    """The exclusive lock of the file ``path`` if nobody holds it, else False at once."""
    with open(path, "a+b") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


#: (memory limit MiB, threads, temp directory) -> (pid, database): opening a database
#: costs 20-100 ms, a session on an open one 0.1 ms (a live flush opens two).
_DATABASES: OrderedDict[tuple[int, int, str], tuple[int, duckdb.DuckDBPyConnection]] = OrderedDict()
_DATABASES_KEPT = 4
_DATABASES_LOCK = threading.Lock()


def _database(key: tuple[int, int, str]) -> duckdb.DuckDBPyConnection:
    """The process's in-memory DuckDB database for ``key`` (opened anew after a fork).

    Sessions share the memory limit, and the few global settings an ingest changes for
    its writes (``preserve_insertion_order``) apply to a concurrent query too, which
    never relies on row order."""
    import duckdb  # here: a query answered from the state never needs it (0.1 s)

    with _DATABASES_LOCK:
        hit = _DATABASES.get(key)
        if hit is not None and hit[0] == os.getpid():
            _DATABASES.move_to_end(key)
            return hit[1]
        memory_mb, threads, tmp = key
        db = duckdb.connect(
            config={"memory_limit": f"{memory_mb}MB", "threads": threads, "temp_directory": tmp}
        )
        _DATABASES[key] = (os.getpid(), db)
        while len(_DATABASES) > _DATABASES_KEPT:
            # Dropped, not closed: closing would end its open sessions too; the database
            # goes when the last of them does.
            _DATABASES.popitem(last=False)
        return db
