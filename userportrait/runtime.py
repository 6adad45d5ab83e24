"""Process-wide memory tuning that the CLI and the server apply when they start.

The state update works in numpy on arrays of 5-40 MB that live for one step (a day's
events' keys, its winners, the histograms' counts). By default glibc hands out each
such block as a fresh mapping and unmaps it when freed, so every step faults its pages
in again, and numpy asks for transparent huge pages on each, which the kernel zeroes
2 MiB at a time on first touch. On this project's 2-core VM that was 0.2-0.4 s of
kernel time in a 2 s add-a-day (bench/RESULTS.md). Blocks below glibc's ceiling for
the threshold now come from the heap and are reused once freed; huge pages are left to
the kernel's own policy.

Only the entry points call this (the library does not change a process it is imported
into); elsewhere than Linux with glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import sys

#: ``mallopt`` parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Blocks below this come from the heap (32 MiB: glibc's ceiling on 64-bit systems).
MMAP_THRESHOLD = 32 << 20
#: Free memory at the heap's top kept for reuse before it is given back (per arena: with
#: 256 MiB a 14 M-event flush peaked 100-150 MiB higher, for no faster a day added).
TRIM_THRESHOLD = 64 << 20

_tuned = False


def tune_process() -> bool:
    """Apply the tuning once per process; whether glibc's allocator took it."""
    global _tuned
    if _tuned:
        return True
    _tuned = True
    _no_numpy_huge_pages()
    return _tune_malloc()


def _tune_malloc() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)  # the process's own symbols, libc's among them
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 (glibc only: musl's mallopt does nothing)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


def _no_numpy_huge_pages() -> None:
    """Turn off numpy's ``madvise(MADV_HUGEPAGE)`` on large arrays: its documented
    ``NUMPY_MADVISE_HUGEPAGE=0`` if numpy is not imported yet (a user's own setting
    stays), else numpy's switch for it (not importing numpy: a CLI start stays quick)."""
    np = sys.modules.get("numpy")
    if np is None:
        os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")
        return
    core = getattr(np, "_core", None) or getattr(np, "core", None)
    switch = getattr(getattr(core, "multiarray", None), "_set_madvise_hugepage", None)
    if switch is not None:
        switch(False)
