"""The catalog: which lake files are committed, and the ingest log (SQLite, WAL mode).

Readers only ever see files listed here, so a crash between writing Parquet files and
committing them leaves orphans that ``Lake.collect_garbage`` removes, never half a batch.
SQLite in WAL mode lets a CLI ingest and a running server share the catalog safely.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from userportrait.store.sqlite import open_db, transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    sha256 TEXT,
    accepted INTEGER NOT NULL DEFAULT 0,
    rejected INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS batches_sha ON batches(sha256);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    appid TEXT NOT NULL,
    day TEXT NOT NULL,
    batch_id INTEGER NOT NULL REFERENCES batches(id),
    rows INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS files_appid_day ON files(appid, day);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS retired (path TEXT PRIMARY KEY, retired_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS profile_files (
    path TEXT PRIMARY KEY,
    appid TEXT NOT NULL,
    batch_id INTEGER NOT NULL REFERENCES batches(id),
    rows INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS profile_files_appid ON profile_files(appid, batch_id);
CREATE TABLE IF NOT EXISTS forgets (
    batch_id INTEGER PRIMARY KEY REFERENCES batches(id),
    appid TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS retention (
    appid TEXT PRIMARY KEY,
    first_kept TEXT NOT NULL,
    first_seen TEXT
);
"""


#: The source of a compaction batch starts with this (``store/compact.py``).
COMPACTION_SOURCE = "compaction of "


@dataclass(frozen=True, slots=True)
class LakeFile:
    path: str  # relative to the data directory
    appid: str
    day: str  # yyyy-mm-dd
    rows: int


@dataclass(frozen=True, slots=True)
class ProfileFile:
    """A file of profile records: one per (batch, appid)."""

    path: str  # relative to the data directory
    appid: str
    batch_id: int
    rows: int


@dataclass(frozen=True, slots=True)
class Retention:
    """An app's retention cut (``store/expire.py``): its events before ``first_kept`` are
    gone, and ``first_seen`` (a lake file of openid, first_day) keeps the first day of
    every user first seen before it."""

    first_kept: str  # yyyy-mm-dd
    first_seen: str | None  # relative to the data directory


@dataclass(frozen=True, slots=True)
class Batch:
    id: int
    source: str
    sha256: str | None
    accepted: int
    rejected: int
    created_at: float


class Catalog:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        with self.connect() as con:
            con.executescript(SCHEMA)

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        with open_db(self.path) as con:
            yield con

    def find_batch_by_sha(self, sha256: str) -> Batch | None:
        with self.connect() as con:
            row = con.execute(
                "SELECT id, source, sha256, accepted, rejected, created_at FROM batches"
                " WHERE sha256 = ? ORDER BY id LIMIT 1",
                (sha256,),
            ).fetchone()
        return Batch(*row) if row else None

    def next_batch_id(self) -> int:
        with self.connect() as con:
            row = con.execute("SELECT seq FROM sqlite_sequence WHERE name='batches'").fetchone()
        return (row[0] if row else 0) + 1

    def commit_batch(
        self,
        batch_id: int,
        source: str,
        sha256: str | None,
        accepted: int,
        rejected: int,
        files: Iterable[LakeFile],
    ) -> int:
        """Record batch ``batch_id`` and its files atomically; returns the batch id."""
        with self.connect() as con, transaction(con):
            _insert_batch(con, batch_id, source, sha256, accepted, rejected)
            con.executemany(
                "INSERT INTO files(path, appid, day, batch_id, rows) VALUES (?, ?, ?, ?, ?)",
                [(f.path, f.appid, f.day, batch_id, f.rows) for f in files],
            )
        return batch_id

    def replace_files(
        self, batch_id: int, source: str, old: Iterable[str], new: Iterable[LakeFile]
    ) -> int:
        """Swap lake files for others holding the same events (compaction), atomically;
        ``source`` starts with ``COMPACTION_SOURCE``.

        The swap is a batch of its own, so the catalog version moves on (caches and the
        derived state follow); the old paths are listed as retired, to be deleted once no
        reader can still be using them.
        """
        old = list(old)
        with self.connect() as con, transaction(con):
            _insert_batch(con, batch_id, source, None, 0, 0)
            con.executemany("DELETE FROM files WHERE path = ?", [(p,) for p in old])
            con.executemany(
                "INSERT INTO files(path, appid, day, batch_id, rows) VALUES (?, ?, ?, ?, ?)",
                [(f.path, f.appid, f.day, batch_id, f.rows) for f in new],
            )
            now = time.time()
            con.executemany(
                "INSERT OR REPLACE INTO retired(path, retired_at) VALUES (?, ?)",
                [(p, now) for p in old],
            )
        return batch_id

    def commit_forget(
        self,
        batch_id: int,
        appid: str,
        source: str,
        old: Iterable[str],
        new: Iterable[LakeFile],
        old_profiles: Iterable[str],
        new_profiles: Iterable[ProfileFile],
        retention: Retention | None = None,
    ) -> int:
        """Swap lake and profile files for copies without some users' rows, atomically
        (``store/forget.py``): unlike a compaction the events change, so the batch is
        recorded in ``forgets`` and the derived state of ``appid`` is rebuilt
        (``forgotten_apps``). The old files are not retired but deleted by the caller at
        once (a crash before that leaves orphans, which ``collect_garbage`` removes)."""
        with self.connect() as con, transaction(con):
            _insert_batch(con, batch_id, source, None, 0, 0)
            con.executemany("DELETE FROM files WHERE path = ?", [(p,) for p in old])
            con.executemany(
                "INSERT INTO files(path, appid, day, batch_id, rows) VALUES (?, ?, ?, ?, ?)",
                [(f.path, f.appid, f.day, batch_id, f.rows) for f in new],
            )
            con.executemany(
                "DELETE FROM profile_files WHERE path = ?", [(p,) for p in old_profiles]
            )
            # A profile file keeps its batch: the latest record is chosen by batch.
            con.executemany(
                "INSERT INTO profile_files(path, appid, batch_id, rows) VALUES (?, ?, ?, ?)",
                [(f.path, f.appid, f.batch_id, f.rows) for f in new_profiles],
            )
            con.execute("INSERT INTO forgets(batch_id, appid) VALUES (?, ?)", (batch_id, appid))
            if retention is not None:  # the kept first days, rewritten without the users
                con.execute(
                    "UPDATE retention SET first_seen = ? WHERE appid = ?",
                    (retention.first_seen, appid),
                )
        return batch_id

    def forgotten_apps(self, after: int, upto: int) -> set[str]:
        """The appids some users of which the batches ``after < id <= upto`` forgot."""
        with self.connect() as con:
            rows = con.execute(
                "SELECT DISTINCT appid FROM forgets WHERE batch_id > ? AND batch_id <= ?",
                (after, upto),
            )
            return {r[0] for r in rows}

    def expire_files(
        self,
        batch_id: int,
        source: str,
        appid: str,
        retention: Retention,
        old: Iterable[str],
    ) -> int:
        """Drop lake files of ``appid`` and record its new retention cut and first-seen
        file, atomically, as a batch of its own (the version moves on: caches follow).

        The batch writes no file, so the derived state sees no touched day: it keeps the
        first days it has, and windows after the cut answer as before. The caller deletes
        the dropped files once this returns (a crash first: ``Lake.collect_garbage``)."""
        with self.connect() as con, transaction(con):
            _insert_batch(con, batch_id, source, None, 0, 0)
            con.executemany("DELETE FROM files WHERE path = ?", [(p,) for p in old])
            con.execute(
                "INSERT OR REPLACE INTO retention(appid, first_kept, first_seen) VALUES (?, ?, ?)",
                (appid, retention.first_kept, retention.first_seen),
            )
        return batch_id

    def retention(self) -> dict[str, Retention]:
        """Every app's retention cut (apps never expired have none)."""
        with self.connect() as con:
            rows = con.execute("SELECT appid, first_kept, first_seen FROM retention")
            return {r[0]: Retention(r[1], r[2]) for r in rows}

    def retention_of(self, appid: str) -> Retention | None:
        with self.connect() as con:
            row = con.execute(
                "SELECT first_kept, first_seen FROM retention WHERE appid = ?", (appid,)
            ).fetchone()
        return Retention(row[0], row[1]) if row else None

    def retired(self, before: float) -> list[str]:
        """Paths retired before the given time (seconds since the epoch)."""
        with self.connect() as con:
            rows = con.execute("SELECT path FROM retired WHERE retired_at < ?", (before,))
            return [r[0] for r in rows]

    def forget_retired(self, paths: Iterable[str]) -> None:
        with self.connect() as con:
            con.executemany("DELETE FROM retired WHERE path = ?", [(p,) for p in paths])

    def day_file_counts(self, min_files: int, below_rows: int) -> list[tuple[str, str, int]]:
        """(appid, day, files) for every partition with at least ``min_files`` files of
        fewer than ``below_rows`` rows each."""
        with self.connect() as con:
            return [
                (r[0], r[1], int(r[2]))
                for r in con.execute(
                    "SELECT appid, day, count(*) FROM files WHERE rows < ? GROUP BY appid, day"
                    " HAVING count(*) >= ? ORDER BY appid, day",
                    (below_rows, min_files),
                )
            ]

    def files(
        self, appid: str | None = None, upto: int | None = None, after: int | None = None
    ) -> list[LakeFile]:
        """The committed files (of ``appid``; written by batches ``after < id <= upto``)."""
        sql = "SELECT path, appid, day, rows FROM files WHERE 1 = 1"
        args: list[str | int] = []
        if appid is not None:
            sql += " AND appid = ?"
            args.append(appid)
        if upto is not None:
            sql += " AND batch_id <= ?"
            args.append(upto)
        if after is not None:
            sql += " AND batch_id > ?"
            args.append(after)
        with self.connect() as con:
            return [LakeFile(*r) for r in con.execute(sql + " ORDER BY day, path", args)]

    def touched(self, after: int, upto: int) -> list[tuple[str, str]]:
        """(appid, day) of every file that the batches ``after < id <= upto`` wrote, but
        compactions (``replace_files``): they change files, never events (a compaction
        brings the state up to date before it swaps files, ``store/compact.py``)."""
        with self.connect() as con:
            rows = con.execute(
                "SELECT DISTINCT f.appid, f.day FROM files f JOIN batches b ON b.id = f.batch_id "
                "WHERE f.batch_id > ? AND f.batch_id <= ? "
                "AND NOT (b.sha256 IS NULL AND substr(b.source, 1, ?) = ?)",
                (after, upto, len(COMPACTION_SOURCE), COMPACTION_SOURCE),
            )
            return [(r[0], r[1]) for r in rows]

    def has_events(self, appid: str) -> bool:
        """Whether any committed file holds ``appid``'s events (an index look-up)."""
        with self.connect() as con:
            row = con.execute("SELECT 1 FROM files WHERE appid = ? LIMIT 1", (appid,)).fetchone()
        return row is not None

    def appids(self) -> list[str]:
        with self.connect() as con:
            return [r[0] for r in con.execute("SELECT DISTINCT appid FROM files ORDER BY 1")]

    def version(self) -> int:
        """A number that grows with every committed batch (cache keys use it)."""
        with self.connect() as con:
            row = con.execute("SELECT COALESCE(MAX(id), 0) FROM batches").fetchone()
        return int(row[0])

    # -- profiles ------------------------------------------------------------------------

    def commit_profiles(
        self,
        batch_id: int,
        source: str,
        sha256: str | None,
        accepted: int,
        rejected: int,
        files: Iterable[ProfileFile],
    ) -> int:
        """Record a batch of profile files atomically (the version moves on, so caches
        and the derived state see the change); returns the batch id."""
        with self.connect() as con, transaction(con):
            _insert_batch(con, batch_id, source, sha256, accepted, rejected)
            con.executemany(
                "INSERT INTO profile_files(path, appid, batch_id, rows) VALUES (?, ?, ?, ?)",
                [(f.path, f.appid, batch_id, f.rows) for f in files],
            )
        return batch_id

    def profile_files(self, appid: str, upto: int | None = None) -> list[ProfileFile]:
        """The committed profile files of ``appid`` (of batches ``<= upto``), oldest first."""
        sql = "SELECT path, appid, batch_id, rows FROM profile_files WHERE appid = ?"
        args: list[str | int] = [appid]
        if upto is not None:
            sql += " AND batch_id <= ?"
            args.append(upto)
        with self.connect() as con:
            return [ProfileFile(*r) for r in con.execute(sql + " ORDER BY batch_id, path", args)]

    def profile_paths(self) -> set[str]:
        """Every committed profile file (relative paths)."""
        with self.connect() as con:
            return {r[0] for r in con.execute("SELECT path FROM profile_files")}


def _insert_batch(
    con: sqlite3.Connection,
    batch_id: int,
    source: str,
    sha256: str | None,
    accepted: int,
    rejected: int,
) -> None:
    """The ``batches`` row of a batch (events, profiles or a compaction)."""
    con.execute(
        "INSERT INTO batches(id, source, sha256, accepted, rejected, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (batch_id, source, sha256, accepted, rejected, time.time()),
    )
