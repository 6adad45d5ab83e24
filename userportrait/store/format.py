"""The data directory's format: one number, in ``DATA_DIR/FORMAT``, read before anything in
the directory is opened (docs/storage.md, "Format changes").

A directory of a newer format than this release knows is refused before a byte under it is
written. An older one is brought up to ``FORMAT`` by the steps of ``MIGRATIONS``, in order,
under the writer lock; the new number is written last (atomic rename), so a step killed
part-way runs again on the next open, which is why every step is idempotent. A directory
without the file is format 0 (the releases before the file existed), or new if empty.

``store/sqlite.py``'s ``private_dir``, through which every store opens the data directory
(the lake, each SQLite file, ``server.key``, the dashboard's admin key), calls
``open_format``; a process checks a directory once.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from userportrait.errors import InputError
from userportrait.store.durable import atomic_write_bytes

#: The format this release writes and the newest it reads.
FORMAT: Final = 1
FORMAT_FILE: Final = "FORMAT"


@dataclass(frozen=True, slots=True)
class Migration:
    """The step from format ``to - 1`` to ``to``: idempotent, and it only adds."""

    to: int
    what: str
    run: Callable[[Path], None]


def _nothing(root: Path) -> None:
    pass


#: One step per format after 0, in order (a test checks ``to`` runs 1..FORMAT).
MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        1,
        "format 0 (releases before the FORMAT file, up to e6db8a2) is read as it is; the "
        "stores' own schema steps run when they open (dashboard.sqlite's grant_digest column)",
        _nothing,
    ),
)


class NewerFormat(InputError):
    """The data directory was written by a newer release than this one."""


_READY: set[str] = set()
_LOCK = threading.RLock()
_MIGRATING: set[str] = set()


def read_format(root: Path) -> int | None:
    """The format recorded in ``root``, None when there is no ``FORMAT`` file."""
    try:
        text = (root / FORMAT_FILE).read_text("ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{root / FORMAT_FILE}: unreadable ({exc})") from None
    if not text.isdigit():
        raise InputError(f"{root / FORMAT_FILE}: not a format number: {text[:40]!r}")
    return int(text)


def refuse_newer(root: Path) -> int | None:
    """``read_format``, raising ``NewerFormat`` for a format this release doesn't know."""
    found = read_format(root)
    if found is not None and found > FORMAT:
        raise NewerFormat(
            f"{root}: this data directory was written by a newer userportrait (format "
            f"{found}); this release reads up to format {FORMAT}; upgrade userportrait"
        )
    return found


def checked(root: Path) -> bool:
    """Whether this process has opened ``root`` already (its format is known good)."""
    return os.path.abspath(root) in _READY


def open_format(root: Path) -> None:
    """Migrate the existing directory ``root`` to ``FORMAT`` unless it is newer (once per
    process and directory); ``private_dir`` calls ``refuse_newer`` before it creates one."""
    key = os.path.abspath(root)
    if key in _READY:
        return
    with _LOCK:
        if key in _READY or key in _MIGRATING:  # a step opening a store of the directory
            return
        found = refuse_newer(root)
        if found is None and not any(root.iterdir()):  # a new directory: nothing to migrate
            atomic_write_bytes(root / FORMAT_FILE, f"{FORMAT}\n".encode())
        elif found != FORMAT:
            _MIGRATING.add(key)
            try:
                _migrate(root)
            finally:
                _MIGRATING.discard(key)
        _READY.add(key)


def _migrate(root: Path) -> None:
    """Run the steps after the directory's format, under the writer lock (``Lake.write_lock``'s
    file): two processes opening an old directory at once migrate it once."""
    with open(root / "write.lock", "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            found = refuse_newer(root) or 0  # again: another process may have moved it on
            for step in MIGRATIONS:
                if step.to > found:
                    step.run(root)
                    atomic_write_bytes(root / FORMAT_FILE, f"{step.to}\n".encode())
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
