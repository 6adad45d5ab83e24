"""Files only the server's user may read: created 0600 before SQLite or a key writes them."""

from __future__ import annotations

import os
from pathlib import Path


def private_file(path: Path) -> Path:
    """Create ``path`` empty with mode 0600 if absent (SQLite's -wal/-shm copy the mode)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    return path
