"""The default engine, ``incremental``: portraits from the incremental store (``store/state/``).

DuckDB builds the derived state from the lake; numpy merges day partitions. Standard
1/7/30-day windows are a lookup; any other window is computed from the day partitions, and
so are filters and cross-tabs (per user of the window, ``store/windows.window_users``).
An app whose state failed to update (``StaleState``) is answered by the ``sql`` engine
from the lake until a retry succeeds: slower, but exact.
"""

from __future__ import annotations

import logging
from functools import cached_property
from typing import TYPE_CHECKING

from userportrait.portrait.counts import CrossCounts, PortraitCounts
from userportrait.portrait.query import PortraitQuery
from userportrait.store.lake import Lake
from userportrait.store.state import StaleState, StateStore

if TYPE_CHECKING:
    from userportrait.engine.sql import SQLEngine

log = logging.getLogger("userportrait.engine")


class IncrementalEngine:
    name = "incremental"

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self.store = StateStore(lake)

    @cached_property
    def fallback(self) -> SQLEngine:
        """The SQL engine, made on the first stale answer: a lookup (a fresh CLI) never
        imports its modules."""
        from userportrait.engine.sql import SQLEngine

        return SQLEngine(self.lake)

    def run_portrait(self, query: PortraitQuery) -> PortraitCounts:
        try:
            return self.store.portrait_after_catch_up(query)
        except StaleState:
            log.warning("portrait of %s answered from the lake (its state is stale)", query.appid)
            return self.fallback.run_portrait(query)

    def run_crosstab(self, query: PortraitQuery) -> CrossCounts:
        try:
            return self.store.crosstab_after_catch_up(query)
        except StaleState:
            log.warning("cross-tab of %s answered from the lake (its state is stale)", query.appid)
            return self.fallback.run_crosstab(query)

    def data_version(self) -> int:
        """The catalog version of this thread's last answer (the cache files it under it)."""
        return self.store.answered_version()

    def close(self) -> None:
        if "fallback" in self.__dict__:  # made (cached_property keeps it there)
            self.fallback.close()
