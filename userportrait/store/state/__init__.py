"""The incremental portrait store: derived state under ``DATA_DIR/state/`` (docs/storage.md).

It is a cache of the lake, kept per appid: a user dictionary and each user's first day,
a device dictionary, one day partition per day with data (per user the day's winning
value of each dimension), span histograms per day with data (every window up to 366 days
ending there) and per-user heads of the last few days.

What the state is, how it follows the lake, and how it is read:

* ``manifest``    — which files make up the state (and which app updates failed); publishing;
* ``days``        — day numbers and day partition files;
* ``partitions``  — building day partitions from the lake (the DuckDB SQL);
* ``head``        — the per-user head (latest values and their ages as of one day);
* ``spans``       — span histograms per end day: every window up to 366 days as a lookup;
* ``profiles``    — the profiled users whose 未知 gaps a profile fills;
* ``shaping``     — window counts into portrait counts;
* ``catching_up`` — ``catch_up``: every app behind the catalog updated, fewest days first;
* ``app_update``  — ``AppUpdate``: one app's touched days rebuilt, its end days replayed;
* ``replay``      — ``Replay``: which end days a change reaches, folded day by day;
* ``reader``      — ``StateStore``: answers, after catching up with the catalog;
* ``forgetting``  — ``forget_in_state``: a forget's users taken out of the files, no rebuild.

How it is kept fast:

* ``overlay``     — the newest day's overlay: what live flushes changed since its files;
* ``folding``     — folding the overlay into the day's files beside the flushes (a thread);
* ``npys``        — named arrays in one file, memory-mapped (no zip to inflate);
* ``winners``     — each user's winners of a day reduced in numpy, not a DuckDB aggregate;
* ``prefetch``    — the day builder a chunk ahead in a thread (DuckDB beside numpy);
* ``batch``       — many small apps' day partitions in one DuckDB pass (issue 30);
* ``cores``       — per-dimension numpy work on both cores (``on_two_cores``).

Window counting itself is pure numpy in ``store/windows.py``.
"""

from __future__ import annotations

from userportrait.store.state.catching_up import catch_up, update_state
from userportrait.store.state.days import VALUE_DTYPES, day_date, day_number
from userportrait.store.state.forgetting import forget_in_state
from userportrait.store.state.head import Head
from userportrait.store.state.manifest import (
    FORMAT,
    AppState,
    Failure,
    Manifest,
    state_failures,
    state_version,
)
from userportrait.store.state.reader import StaleState, StateStore
from userportrait.store.state.spans import STANDARD_LENGTHS

__all__ = [
    "FORMAT",
    "STANDARD_LENGTHS",
    "VALUE_DTYPES",
    "AppState",
    "Failure",
    "Head",
    "Manifest",
    "StaleState",
    "StateStore",
    "catch_up",
    "day_date",
    "day_number",
    "forget_in_state",
    "state_failures",
    "state_version",
    "update_state",
]
