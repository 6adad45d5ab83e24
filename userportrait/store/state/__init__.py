"""The incremental portrait store: derived state under ``DATA_DIR/state/`` (docs/storage.md).

It is a cache of the lake, kept per appid: a user dictionary and each user's first day,
a device dictionary, one day partition per day with data (per user the day's winning
value of each dimension), span histograms per day with data (every window up to 366 days
ending there) and per-user heads of the last few days. The rooms:

* ``manifest``   — which files make up the state (and which app updates failed);
* ``days``       — day numbers and day partition files;
* ``partitions`` — building day partitions from the lake (the DuckDB SQL);
* ``head``       — the per-user head (latest values and their ages as of one day);
* ``spans``      — span histograms per end day: every window up to 366 days as a lookup;
* ``shaping``    — window counts into portrait counts;
* ``update``     — the update policy (catch up, which windows to recount, publish);
* ``overlay``    — the newest day's overlay: what live flushes changed since its files;
* ``folding``    — folding the overlay into the day's files beside the flushes (a thread);
* ``reader``     — ``StateStore``: answers, following the catalog.

Window counting itself is pure numpy in ``store/windows.py``.
"""

from __future__ import annotations

from userportrait.store.state.days import VALUE_DTYPES, day_date, day_number
from userportrait.store.state.head import Head
from userportrait.store.state.manifest import FORMAT, AppState, Failure, Manifest, state_failures
from userportrait.store.state.reader import StaleState, StateStore
from userportrait.store.state.update import STANDARD_LENGTHS, catch_up, update_state

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
    "state_failures",
    "update_state",
]
