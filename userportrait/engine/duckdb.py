"""The default engine: portraits from the incremental store (``store/state.py``).

DuckDB builds the derived state from the lake; numpy merges day partitions. Standard
1/7/30-day windows are a lookup; any other window is computed from the day partitions.
"""

from __future__ import annotations

from userportrait.portrait.counts import PortraitCounts
from userportrait.portrait.query import PortraitQuery
from userportrait.store.lake import Lake
from userportrait.store.state import StateStore


class DuckDBEngine:
    name = "duckdb"

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self.store = StateStore(lake)

    def run_portrait(self, query: PortraitQuery) -> PortraitCounts:
        return self.store.portrait(query)

    def data_version(self) -> int:
        """The catalog version of this thread's last answer (the cache files it under it)."""
        return self.store.answered_version()

    def close(self) -> None:
        pass
