"""Durable writes, the one place for them: fsync helpers and atomic file replacement.

A Parquet file renamed into the lake is only durable once its data and the directory
entries up to the lake root are flushed; otherwise a power loss after the catalog commit
(and after the live WAL segment is deleted) could lose acknowledged events. Derived state
files are written whole to ``NAME.tmp``, flushed and renamed over ``NAME``, so a reader
never sees half a file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO


def fsync_path(path: Path) -> None:
    """Flush a file's data, or a directory's entries, to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(files: Iterable[Path], root: Path) -> None:
    """Flush ``files`` and every directory from their parents up to ``root`` (once each)."""
    dirs: set[Path] = set()
    for f in files:
        fsync_path(f)
        d = f.parent
        while d not in dirs and (d == root or root in d.parents):
            dirs.add(d)
            d = d.parent
    for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        fsync_path(d)


def atomic_write(
    path: Path,
    write: Callable[[BinaryIO], object],
    check: Callable[[Path], object] | None = None,
) -> None:
    """Replace ``path`` by what ``write`` writes to a file object, flushed to disk first.

    ``check`` reads the written file before it replaces anything: what it raises leaves
    ``path`` as it was (the file that gets installed is the one that was checked).
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        if check is not None:
            check(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)


def move_into_place(done: Path, path: Path) -> None:
    """Replace ``path`` by ``done``, a file another writer finished (Spark), flushed first."""
    fsync_path(done)
    done.replace(path)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda fh: fh.write(data))
