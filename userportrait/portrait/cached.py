"""Portraits for the server: computed off the event loop, cached per store version."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from userportrait.engine.base import Engine
from userportrait.portrait.query import PortraitQuery
from userportrait.portrait.result import RefDateMode
from userportrait.portrait.service import portrait
from userportrait.store.lake import Lake

Key = tuple[str, str, str, str, int]


class PortraitCache:
    """LRU of answers keyed by (query, ref_date mode, catalog version).

    A committed ingest raises the catalog version, so stale answers are never served and
    no invalidation is needed.
    """

    def __init__(self, lake: Lake, engine: Engine, size: int = 512) -> None:
        self.lake = lake
        self.engine = engine
        self.size = size
        self._items: OrderedDict[Key, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, query: PortraitQuery, mode: RefDateMode) -> dict[str, Any]:
        key: Key = (query.appid, query.begin.isoformat(), query.end.isoformat(), mode,
                    self.lake.catalog.version())  # fmt: skip
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
        body = portrait(query, self.engine, mode)
        with self._lock:
            self.misses += 1
            self._items[key] = body
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return body
