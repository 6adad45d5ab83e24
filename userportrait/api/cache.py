"""Portraits for the server: computed off the event loop, time-limited, cached per store version."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import anyio.to_thread

from userportrait.engine.base import Engine
from userportrait.errors import QueryTimeout
from userportrait.portrait.query import PortraitQuery
from userportrait.portrait.result import RefDateMode
from userportrait.portrait.service import portrait
from userportrait.store.lake import Lake

Key = tuple[PortraitQuery, str, int]


class PortraitCache:
    """The server's portraits: ``run(query)`` is what every route calls.

    An LRU of answers keyed by (the query: appid, window, threshold, filters, by,
    compare; ref_date mode; catalog version). A committed ingest raises the catalog version, so stale answers are never
    served and no invalidation is needed. An engine that may answer from state lagging the
    catalog (a derived store being caught up by another writer) says so in
    ``data_version()``, the catalog version its last answer reflected: the answer is then
    filed under that version, so a lagging answer is never served for a newer version.
    Concurrent misses on one key compute it once (the others wait for that answer), so a
    burst of identical requests costs one engine run.
    """

    def __init__(
        self,
        lake: Lake,
        engine: Engine,
        *,
        size: int,
        mode: RefDateMode,
        time_limit_ms: int,
    ) -> None:
        self.lake = lake
        self.engine = engine
        self.size = size
        self.mode: RefDateMode = mode
        self.time_limit_ms = time_limit_ms
        self._items: OrderedDict[Key, dict[str, Any]] = OrderedDict()
        self._flights: dict[Key, threading.Lock] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def _lookup(self, key: Key) -> dict[str, Any] | None:
        body = self._items.get(key)
        if body is not None:
            self._items.move_to_end(key)
            self.hits += 1
        return body

    def get(self, query: PortraitQuery) -> dict[str, Any]:
        """The answer, from the cache or computed now (blocking; call it in a thread)."""
        key: Key = (query, self.mode, self.lake.catalog.version())
        with self._lock:
            body = self._lookup(key)
            if body is not None:
                return body
            flight = self._flights.setdefault(key, threading.Lock())
        with flight:
            with self._lock:
                body = self._lookup(key)
            if body is not None:
                return body
            try:
                body = portrait(query, self.engine, self.mode)
                answered = self.engine.data_version()
            finally:
                with self._lock:
                    self._flights.pop(key, None)
            with self._lock:
                self.misses += 1
                self._items[key if answered is None else (key[0], key[1], answered)] = body
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
        return body

    async def run(self, query: PortraitQuery) -> dict[str, Any]:
        """The WeChat JSON of ``query``, computed in a worker thread; QueryTimeout (-1)
        past the time limit.

        The engine cannot be interrupted, so a late computation finishes in its thread and
        still fills the cache: a retry of the same window then answers at once.
        """
        with anyio.move_on_after(self.time_limit_ms / 1000):
            return await anyio.to_thread.run_sync(self.get, query, abandon_on_cancel=True)
        raise QueryTimeout(f"portrait took longer than {self.time_limit_ms} ms")
