"""Named numpy arrays in one file, each a plain ``.npy`` record one after the other.

No zip (``np.savez``): reading needs no CRC pass, and the arrays can be memory-mapped, so
a live flush reads only the rows of its batch's users from the newest day's files
(``overlay.py``), not the whole day. The first record lists the names.
"""

from __future__ import annotations

import mmap
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from numpy.lib import format as npformat

from userportrait.store.durable import atomic_write

Arrays = dict[str, np.ndarray[Any, Any]]


def save_arrays(path: Path, arrays: Mapping[str, np.ndarray[Any, Any]]) -> None:
    """Write ``arrays`` (1-d, plain dtypes) atomically."""

    def write(fh: BinaryIO) -> None:
        np.save(fh, np.array(list(arrays), dtype=np.str_), allow_pickle=False)
        for a in arrays.values():
            np.save(fh, np.ascontiguousarray(a), allow_pickle=False)

    atomic_write(path, write)


def load_arrays(path: Path, mapped: bool = False) -> Arrays:
    """The arrays of ``path``: read into memory, or ``mapped`` read-only from the page
    cache (only the pages a caller touches are read)."""
    with path.open("rb") as fh:
        names = [str(n) for n in np.load(fh, allow_pickle=False)]
        layout = [(name, *_header(fh, path)) for name in names]
        if not mapped:
            out: Arrays = {}
            for name, dtype, count, offset in layout:
                fh.seek(offset)
                out[name] = np.fromfile(fh, dtype=dtype, count=count)
                if len(out[name]) != count:
                    raise ValueError(f"{path}: truncated at {name}")
            return out
        if not layout:
            return {}
        buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    return {
        name: np.frombuffer(buf, dtype=dtype, count=count, offset=offset)
        for name, dtype, count, offset in layout
    }


def _header(fh: BinaryIO, path: Path) -> tuple[np.dtype[Any], int, int]:
    """Read one record's header; returns (dtype, length, data offset) and skips its data."""
    version = npformat.read_magic(fh)
    read = npformat.read_array_header_1_0 if version == (1, 0) else npformat.read_array_header_2_0
    shape, fortran, dtype = read(fh)
    if len(shape) != 1 or fortran or dtype.hasobject:
        raise ValueError(f"{path}: unexpected array {dtype}{shape}")
    offset = fh.tell()
    fh.seek(offset + shape[0] * dtype.itemsize)
    return dtype, int(shape[0]), offset
