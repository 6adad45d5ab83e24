"""Per-app small-count thresholds (``apps threshold``), a table of ``meta.sqlite``.

Off (absent) by default. The server reads the whole table at most once a second, so an
``apps threshold`` run beside a live server takes effect within a second and a request
costs no SQLite read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from userportrait.errors import InvalidAppId, InvalidRequest
from userportrait.store.sqlite import open_db

SCHEMA: Final = "CREATE TABLE IF NOT EXISTS thresholds (appid TEXT PRIMARY KEY, k INTEGER NOT NULL)"


class Thresholds:
    def __init__(
        self, path: Path, *, ttl_s: float = 1.0, now: Callable[[], float] = time.monotonic
    ) -> None:
        self.path = path
        self.ttl = ttl_s
        self.now = now
        self._cache: tuple[float, dict[str, int]] | None = None
        self._lock = threading.Lock()
        with open_db(path) as con:
            con.execute(SCHEMA)

    def set(self, appid: str, k: int | None) -> None:
        """Protect ``appid`` with threshold ``k`` (at least 2), or switch it off (None)."""
        from userportrait.portrait.rules import APPID_RE

        if not APPID_RE.fullmatch(appid):
            raise InvalidAppId(f"{appid!r}: letters, digits, _ . - only, at most 64")
        if k is not None and not 2 <= k <= 1_000_000:
            raise InvalidRequest("k must be between 2 and 1000000")
        with open_db(self.path) as con:
            if k is None:
                con.execute("DELETE FROM thresholds WHERE appid = ?", (appid,))
            else:
                con.execute("INSERT OR REPLACE INTO thresholds VALUES (?, ?)", (appid, k))
        with self._lock:
            self._cache = None

    def all(self) -> dict[str, int]:
        with self._lock:
            if self._cache is not None and self.now() - self._cache[0] < self.ttl:
                return self._cache[1]
        with open_db(self.path) as con:
            table = {str(a): int(k) for a, k in con.execute("SELECT appid, k FROM thresholds")}
        with self._lock:
            self._cache = (self.now(), table)
        return table

    def get(self, appid: str) -> int | None:
        return self.all().get(appid)
