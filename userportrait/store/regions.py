"""Installing a newer ip2region database in the data directory (``regions ip-db``).

``portrait/ipregion.py`` decides whether a file is a database ingest can use; this module
puts the checked copy in place durably (``store/durable.py``), as the domain does no I/O
of its own beyond reading.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import BinaryIO

from userportrait.portrait.ipregion import (
    ACTIVE_DB,
    IpDatabase,
    IpDbError,
    check_copy,
    decode_db,
    load_db,
)
from userportrait.store.durable import atomic_write


def install_db(source: Path, data_dir: Path) -> IpDatabase:
    """Check ``source`` and copy it atomically to ``DATA_DIR/regions/ip2region.xdb``."""
    if not source.is_file():
        raise IpDbError(f"{source}: no such file")
    decode_db(source)  # refused before anything is copied

    def copy(fh: BinaryIO) -> None:
        with source.open("rb") as src:
            shutil.copyfileobj(src, fh, 1 << 20)

    target = data_dir / ACTIVE_DB
    target.parent.mkdir(parents=True, exist_ok=True)
    # The copy is what gets installed, so the copy is what is checked.
    atomic_write(target, copy, check=lambda copied: check_copy(copied, source))
    return load_db(target)
