"""Per-app access policy in ``DATA_DIR/access.sqlite`` (0600): API-security keys, IP
allow-lists, API-security nonces seen, and datacube calls per Asia/Shanghai day.

The CLI writes while the server runs, so the server keeps one connection and rereads its
cache of keys and lists whenever ``PRAGMA data_version`` says another connection committed.
"""

from __future__ import annotations

import ipaddress
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from userportrait.auth.allowlist import Network, parse_networks
from userportrait.auth.security import AppKeys, load_public_key, public_pem
from userportrait.errors import ExpiredTimestamp
from userportrait.store.sqlite import private_file

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS security (
    appid TEXT PRIMARY KEY, aes_key BLOB NOT NULL, aes_sn TEXT NOT NULL,
    public_key_pem TEXT NOT NULL, public_key_sn TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS allow_ip (appid TEXT NOT NULL, cidr TEXT NOT NULL, PRIMARY KEY (appid, cidr));
CREATE TABLE IF NOT EXISTS nonces (appid TEXT NOT NULL, n TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (appid, n));
CREATE TABLE IF NOT EXISTS calls_per_day (appid TEXT NOT NULL, day TEXT NOT NULL, calls INTEGER NOT NULL, PRIMARY KEY (appid, day));
"""


class Policy:
    def __init__(self, path: Path, *, now: Callable[[], float] = time.time) -> None:
        self.path = private_file(path)
        self.now = now
        self._lock = threading.Lock()
        # One connection, used under the lock from any thread; NORMAL sync is durable
        # across process crashes in WAL mode (only a power cut may lose the last commits).
        self._con = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("PRAGMA synchronous=NORMAL")
        self._con.executescript(SCHEMA)
        self._version = -1
        self._keys: dict[str, AppKeys] = {}
        self._allow: dict[str, list[Network]] = {}

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def _fresh(self) -> None:
        """Reload keys and lists if another connection (the CLI) committed. Under the lock."""
        version = self._con.execute("PRAGMA data_version").fetchone()[0]
        if version == self._version:
            return
        self._version = version
        self._keys = {
            appid: AppKeys(appid, key, sn, load_public_key(pem.encode()), pub_sn)
            for appid, key, sn, pem, pub_sn in self._con.execute("SELECT * FROM security")
        }
        allow: dict[str, list[Network]] = {}
        for appid, cidr in self._con.execute("SELECT appid, cidr FROM allow_ip"):
            allow.setdefault(appid, []).append(ipaddress.ip_network(cidr))
        self._allow = allow

    # -- API-security mode ---------------------------------------------------------------------
    def set_security(self, appid: str, aes_key: bytes, aes_sn: str, public_key_pem: bytes, public_key_sn: str) -> None:  # fmt: skip
        pem = public_pem(load_public_key(public_key_pem))
        with self._lock:
            self._con.execute(
                "INSERT OR REPLACE INTO security VALUES (?, ?, ?, ?, ?)",
                (appid, aes_key, aes_sn, pem, public_key_sn),
            )
            self._version = -1

    def security_off(self, appid: str) -> bool:
        with self._lock:
            self._version = -1
            return self._con.execute("DELETE FROM security WHERE appid = ?", (appid,)).rowcount > 0

    def use_nonce(self, appid: str, nonce: str, window_s: int) -> None:
        """Remember ``_n`` for the replay window; a second use is refused (40240)."""
        now = self.now()
        with self._lock:
            self._con.execute("DELETE FROM nonces WHERE at < ?", (now - 2 * window_s,))
            try:
                self._con.execute("INSERT INTO nonces VALUES (?, ?, ?)", (appid, nonce, now))
            except sqlite3.IntegrityError:
                raise ExpiredTimestamp("_n was used before (replay)") from None

    # -- IP allow-list -------------------------------------------------------------------------
    def set_allowed(self, appid: str, cidrs: list[str]) -> list[str]:
        """Replace the app's list (empty = any address); returns the networks as stored."""
        nets = [str(n) for n in parse_networks(cidrs)]
        with self._lock:
            self._con.execute("BEGIN IMMEDIATE")
            self._con.execute("DELETE FROM allow_ip WHERE appid = ?", (appid,))
            self._con.executemany(
                "INSERT OR IGNORE INTO allow_ip VALUES (?, ?)", [(appid, n) for n in nets]
            )
            self._con.execute("COMMIT")
            self._version = -1
        return nets

    def of(self, appid: str) -> tuple[list[Network], AppKeys | None]:
        """The app's allow-list and API-security keys, in one look (the datacube's path)."""
        with self._lock:
            self._fresh()
            return list(self._allow.get(appid, ())), self._keys.get(appid)

    def allowed(self, appid: str) -> list[Network]:
        with self._lock:
            self._fresh()
            return list(self._allow.get(appid, ()))

    # -- calls per day -------------------------------------------------------------------------
    def add_call(self, appid: str, day: str, limit: int) -> bool:
        """Count one call of ``appid`` on ``day`` unless ``limit`` is reached already."""
        with self._lock:
            row = self._con.execute(
                "SELECT calls FROM calls_per_day WHERE appid = ? AND day = ?", (appid, day)
            ).fetchone()
            if row is not None and row[0] >= limit:
                return False
            self._con.execute(
                "INSERT INTO calls_per_day VALUES (?, ?, 1) ON CONFLICT (appid, day) "
                "DO UPDATE SET calls = calls + 1",
                (appid, day),
            )
            self._con.execute("DELETE FROM calls_per_day WHERE day < ?", (_days_before(day, 7),))
            return True


def _days_before(day: str, n: int) -> str:
    import datetime as dt

    return f"{dt.date.fromisoformat(day) - dt.timedelta(days=n):%Y-%m-%d}"
