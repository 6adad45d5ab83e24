"""Dashboard sign-in: server-side sessions, one-time sign-in links and the admin key.

Kept in ``DATA_DIR/dashboard.sqlite`` (apart from ``meta.sqlite``, which the API's tokens
own). Only SHA-256 digests of session ids and link codes are stored, so neither can be read
back from the file. A session belongs to one appid, or to the admin (``appid`` NULL), who
may read every app. The admin key is the one line of ``DATA_DIR/dashboard-admin-key``
(``userportrait dashboard admin-key`` writes it); without that file there is no admin.

A session lasts no longer than what granted it: it keeps a digest of its grant (the app's
secret, or the admin key) and is refused once that changed — ``apps rotate-secret``,
``apps remove`` or a new admin key end the sessions they had granted at once.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from userportrait.errors import AccessTokenExpired, AccessTokenMissing, InvalidCredential
from userportrait.store.sqlite import open_db, private_dir, transaction

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS sessions (
    digest TEXT PRIMARY KEY, appid TEXT, created_at REAL NOT NULL, expires_at REAL NOT NULL,
    grant_digest TEXT
);
CREATE TABLE IF NOT EXISTS links (
    digest TEXT PRIMARY KEY, appid TEXT NOT NULL, expires_at REAL NOT NULL, used_at REAL
);
"""
ADMIN_KEY_FILE: Final = "dashboard-admin-key"
#: The cookie that carries a session id (HttpOnly, SameSite=Strict: docs/dashboard.md).
COOKIE: Final = "userportrait_session"


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in browser: ``appid`` None is the admin."""

    appid: str | None
    expires_at: float

    def may_read(self, appid: str) -> bool:
        return self.appid is None or self.appid == appid


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def admin_key_path(data_dir: Path) -> Path:
    return data_dir / ADMIN_KEY_FILE


def write_admin_key(data_dir: Path, key: str | None = None) -> str:
    """Write (or replace) the admin key, readable by the owner only; returns it."""
    key = key or secrets.token_urlsafe(24)
    if len(key) < 12:
        raise ValueError("the admin key must be at least 12 characters")
    path = admin_key_path(private_dir(data_dir))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key


def _no_app(appid: str) -> str | None:
    return None


class SessionStore:
    """``app_grant(appid)``: a digest that changes with the app's secret, None once the app
    is gone (``AuthStore.grant``); the default grants no app session."""

    def __init__(
        self, data_dir: Path, *, session_ttl_s: int = 28_800, link_ttl_s: int = 600,
        now: Callable[[], float] = time.time,
        app_grant: Callable[[str], str | None] = _no_app,
    ) -> None:  # fmt: skip
        self.data_dir = data_dir
        self.app_grant = app_grant
        self.path = data_dir / "dashboard.sqlite"
        self.session_ttl = session_ttl_s
        self.link_ttl = link_ttl_s
        self.now = now
        data_dir.mkdir(parents=True, exist_ok=True)
        with self._db() as con:
            con.executescript(SCHEMA)
            columns = {row[1] for row in con.execute("PRAGMA table_info(sessions)")}
            if "grant_digest" not in columns:  # a store of an earlier release
                con.execute("ALTER TABLE sessions ADD COLUMN grant_digest TEXT")

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with open_db(self.path) as con:
            yield con

    def _admin_key(self) -> str | None:
        try:
            return admin_key_path(self.data_dir).read_text("utf-8").strip() or None
        except FileNotFoundError:
            return None

    def check_admin_key(self, key: str) -> None:
        """InvalidCredential (40001) unless ``key`` is the admin key of the data directory."""
        expected = self._admin_key()
        if expected is None:
            raise InvalidCredential("no admin key is set for this server")
        if not hmac.compare_digest(key.encode(), expected.encode()):
            raise InvalidCredential("wrong admin key")

    def grant(self, appid: str | None) -> str | None:
        """The digest of what grants a session of ``appid`` now (None: nothing does)."""
        if appid is not None:
            return self.app_grant(appid)
        key = self._admin_key()
        return None if key is None else _digest("admin\0" + key)

    def start(self, appid: str | None) -> str:
        """A new session for ``appid`` (None: admin); returns the id for the cookie."""
        grant = self.grant(appid)
        if grant is None:
            raise InvalidCredential("nothing grants a session for this app any more")
        sid = secrets.token_urlsafe(32)
        now = self.now()
        with self._db() as con:
            con.execute("DELETE FROM sessions WHERE expires_at < ?", (now - 86_400,))
            con.execute(
                "INSERT INTO sessions(digest, appid, created_at, expires_at, grant_digest) "
                "VALUES (?, ?, ?, ?, ?)",
                (_digest(sid), appid, now, now + self.session_ttl, grant),
            )
        return sid

    def get(self, sid: str | None) -> Session:
        """The live session of ``sid``; 41001 without one, 40001 unknown, 42001 expired."""
        if not sid:
            raise AccessTokenMissing("not signed in")
        with self._db() as con:
            row = con.execute(
                "SELECT appid, expires_at, grant_digest FROM sessions WHERE digest = ?",
                (_digest(sid),),
            ).fetchone()
        if row is None:
            raise InvalidCredential("the session is unknown or signed out")
        if row[1] <= self.now():
            raise AccessTokenExpired("the session has expired; sign in again")
        grant = self.grant(row[0])
        if grant is None or row[2] is None or not hmac.compare_digest(grant, row[2]):
            self.end(sid)
            raise InvalidCredential(
                "the session ended: the secret, app or admin key that granted it changed; "
                "sign in again"
            )
        return Session(row[0], row[1])

    def end(self, sid: str | None) -> None:
        if sid:
            with self._db() as con:
                con.execute("DELETE FROM sessions WHERE digest = ?", (_digest(sid),))

    def new_link_code(self, appid: str) -> str:
        """A one-time code for ``appid``, valid ``link_ttl_s`` seconds."""
        code = secrets.token_urlsafe(24)
        now = self.now()
        with self._db() as con:
            con.execute("DELETE FROM links WHERE expires_at < ?", (now - 86_400,))
            con.execute(
                "INSERT INTO links(digest, appid, expires_at) VALUES (?, ?, ?)",
                (_digest(code), appid, now + self.link_ttl),
            )
        return code

    def redeem(self, code: str) -> str:
        """The appid of a valid, unused link code, which is used up; 40001 otherwise."""
        now = self.now()
        with self._db() as con, transaction(con):
            row = con.execute(
                "SELECT appid FROM links WHERE digest = ? AND used_at IS NULL AND expires_at > ?",
                (_digest(code), now),
            ).fetchone()
            if row is None:
                raise InvalidCredential("the sign-in link is invalid, used or expired")
            con.execute("UPDATE links SET used_at = ? WHERE digest = ?", (now, _digest(code)))
        return str(row[0])
