"""The default engine, ``incremental``: portraits from the incremental store (``store/state/``).

DuckDB builds the derived state from the lake; numpy merges day partitions. Standard
1/7/30-day windows are a lookup; any other window is computed from the day partitions.
An app whose state failed to update (``StaleState``) is answered by the ``sql`` engine
from the lake until a retry succeeds: slower, but exact.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from userportrait.portrait.counts import PortraitCounts
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
        # Made on the first stale answer only: a lookup (a fresh CLI) never imports the
        # SQL engine's modules.
        self.fallback: SQLEngine | None = None

    def run_portrait(self, query: PortraitQuery) -> PortraitCounts:
        try:
            return self.store.portrait_after_catch_up(query)
        except StaleState:
            log.warning("portrait of %s answered from the lake (its state is stale)", query.appid)
            if self.fallback is None:
                from userportrait.engine.sql import SQLEngine

                self.fallback = SQLEngine(self.lake)
            return self.fallback.run_portrait(query)

    def data_version(self) -> int:
        """The catalog version of this thread's last answer (the cache files it under it)."""
        return self.store.answered_version()

    def close(self) -> None:
        if self.fallback is not None:
            self.fallback.close()
