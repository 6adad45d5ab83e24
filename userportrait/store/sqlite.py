"""The one way userportrait opens its SQLite files: WAL mode, FULL sync, autocommit, 0600.

The files are created 0600 (SQLite gives its -wal and -shm files the database's mode) in a
0700 data directory, and looser modes left by older versions are tightened on open.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from userportrait.store.format import checked, open_format, refuse_newer

#: Files that mark a directory as a userportrait data directory (safe to tighten).
OWN_FILES = ("catalog.sqlite", "meta.sqlite", "server.key", "FORMAT")


def private_dir(path: Path) -> Path:
    """The data directory ``path``, opened: refused if a newer release wrote it, else
    created 0700 and migrated to this release's format (``store/format.py``). Every store
    opens the data directory through here, so nothing is written under a newer one.

    An existing directory is tightened only if it is plainly ours (empty or holding our
    files, not sticky, same owner), so that ``--data-dir /tmp`` or a home directory is
    never changed."""
    seen = checked(path)
    if not seen:
        refuse_newer(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    if stat.S_IMODE(st.st_mode) & 0o077 and not st.st_mode & stat.S_ISVTX:
        ours = not any(path.iterdir()) or any((path / f).exists() for f in OWN_FILES)
        if ours and st.st_uid == os.getuid():
            path.chmod(0o700)
    if not seen:
        open_format(path)
    return path


def private_file(path: Path) -> Path:
    """``path`` as a file only its owner can read (created empty 0600, tightened if looser;
    SQLite's -wal and -shm files copy the mode) in the data directory, opened first."""
    private_dir(path.parent)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            path.chmod(0o600)
    return path


@contextmanager
def open_db(path: Path) -> Iterator[sqlite3.Connection]:
    private_file(path)
    con = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        yield con
    finally:
        con.close()


@contextmanager
def transaction(con: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction taken at once (BEGIN IMMEDIATE), rolled back on any exception."""
    con.execute("BEGIN IMMEDIATE")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
