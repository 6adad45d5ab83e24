"""The incremental portrait store: derived state under ``DATA_DIR/state/`` (docs/storage.md).

It is a cache of the lake, kept per appid: a user dictionary and each user's first day,
a device dictionary, one day partition per day with data (per user the day's winning
value of each dimension), a per-user head as of the newest day, and the table of every
1/7/30-day window. The rooms:

* ``manifest``   — which files make up the state (and which app updates failed);
* ``days``       — day numbers and day partition files;
* ``partitions`` — building day partitions from the lake (the DuckDB SQL);
* ``head``       — the per-user head and the windows ending on the newest day;
* ``table``      — the window table and its shaping into portrait counts;
* ``update``     — the update policy (catch up, which windows to recount, publish);
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
