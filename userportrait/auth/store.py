"""Apps (appid + hashed secret) and access tokens, kept in ``DATA_DIR/meta.sqlite``.

Token rules follow WeChat (docs/api.md): a token lives ``token_ttl_s`` (7200 s); a new
``/cgi-bin/token`` call cuts the app's previous tokens to at most ``token_overlap_s``
(300 s) more; ``stable_token`` returns the same token while it has more than the overlap
left, and ``force_refresh`` replaces it at once, at most 20 times a day and 30 s apart.
Only SHA-256 digests of tokens and scrypt digests of secrets are stored, so neither can be
read back from the file; a stable token is derived again from the server key and its epoch
(``auth/keys.py``). Tokens survive restarts.

Credentials are split by scope (docs/api.md): tokens read and never write; an app's
one **ingest key** (``upik_…``, kept as a SHA-256 digest) writes — ``POST /v1/events`` and
``/v1/profiles`` — and never reads, so a reader cannot inject fake users to undo the
small-count threshold. A new key retires the previous at once. Keys are looked up in the
file on every request, not cached, so ``apps ingest-key`` / ``apps remove`` run by the CLI
take effect in a running server at once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from userportrait.auth.digests import hash_secret, token_digest
from userportrait.auth.keys import server_key
from userportrait.auth.keys import stable_token as derive_stable
from userportrait.errors import (
    AccessTokenExpired,
    AccessTokenMissing,
    AppIdMissing,
    AppSecretMissing,
    InvalidAppId,
    InvalidAppSecret,
    InvalidCredential,
    InvalidRequest,
)
from userportrait.store.sqlite import open_db, private_dir, transaction

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS apps (
    appid TEXT PRIMARY KEY, salt BLOB NOT NULL, secret_hash BLOB NOT NULL,
    created_at REAL NOT NULL, secret_version INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS tokens (
    digest TEXT PRIMARY KEY, appid TEXT NOT NULL, kind TEXT NOT NULL,
    issued_at REAL NOT NULL, expires_at REAL NOT NULL, revoked_at REAL
);
CREATE INDEX IF NOT EXISTS tokens_app ON tokens(appid, kind);
CREATE TABLE IF NOT EXISTS force_refresh (appid TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS stable_epochs (appid TEXT PRIMARY KEY, epoch INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS ingest_keys (
    appid TEXT PRIMARY KEY, digest TEXT NOT NULL UNIQUE, created_at REAL NOT NULL
);
"""
#: Ingest keys start with this, so a leaked one is recognised (and told from a token).
INGEST_KEY_PREFIX: Final = "upik_"
#: Older versions kept stable tokens in plain text; dropped (and the file vacuumed).
LEGACY_PLAIN: Final = "stable_plain"
FORCE_REFRESH_PER_DAY: Final = 20
FORCE_REFRESH_GAP_S: Final = 30


@dataclass(frozen=True, slots=True)
class Issued:
    token: str
    expires_in: int


class AuthStore:
    def __init__(
        self, path: Path, *, ttl_s: int = 7200, overlap_s: int = 300,
        now: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self.path = path
        self.ttl = ttl_s
        self.overlap = overlap_s
        self.now = now
        private_dir(path.parent)
        self.key = server_key(path.parent)
        # appid -> (salt, keyed hash) of the secret last verified: a repeat check skips
        # scrypt (auth/limits.py). The salt changes when the secret does, even elsewhere.
        self._verified: dict[str, tuple[bytes, bytes]] = {}
        with self._db() as con:
            con.executescript(SCHEMA)
            legacy = con.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (LEGACY_PLAIN,)
            ).fetchone()
            if legacy:
                con.execute(f"DROP TABLE {LEGACY_PLAIN}")
                con.execute("VACUUM")
                con.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with open_db(self.path) as con:
            con.execute("PRAGMA secure_delete=ON")  # freed pages are zeroed, not left behind
            yield con

    # -- apps ------------------------------------------------------------------------------
    def add_app(self, appid: str, secret: str) -> None:
        from userportrait.portrait.rules import Reject, appid_problem

        problem = appid_problem(appid)
        if problem is Reject.APPID_RESERVED:
            raise InvalidAppId(problem.text())
        if problem:
            raise InvalidAppId(f"{appid!r}: letters, digits, _ . - only, at most 64")
        if len(secret) < 8:
            raise InvalidRequest("secret must be at least 8 characters")
        salt = secrets.token_bytes(16)
        with self._db() as con:
            try:
                con.execute(
                    "INSERT INTO apps(appid, salt, secret_hash, created_at) VALUES (?, ?, ?, ?)",
                    (appid, salt, hash_secret(secret, salt), self.now()),
                )
            except sqlite3.IntegrityError:
                raise InvalidAppId(f"{appid} is registered already") from None

    def set_secret(self, appid: str, secret: str) -> None:
        """Replace the secret; every token of the app stops working."""
        salt = secrets.token_bytes(16)
        with self._db() as con:
            cur = con.execute(
                "UPDATE apps SET salt = ?, secret_hash = ?, secret_version = secret_version + 1"
                " WHERE appid = ?",
                (salt, hash_secret(secret, salt), appid),
            )
            if cur.rowcount == 0:
                raise InvalidAppId(f"{appid} is not registered")
            con.execute(
                "UPDATE tokens SET revoked_at = ? WHERE appid = ? AND revoked_at IS NULL",
                (self.now(), appid),
            )

    def remove_app(self, appid: str) -> None:
        with self._db() as con:
            if con.execute("DELETE FROM apps WHERE appid = ?", (appid,)).rowcount == 0:
                raise InvalidAppId(f"{appid} is not registered")
            con.execute("DELETE FROM tokens WHERE appid = ?", (appid,))
            con.execute("DELETE FROM ingest_keys WHERE appid = ?", (appid,))

    def grant(self, appid: str) -> str | None:
        """A digest that changes whenever the app's secret does; None once it is removed
        (what a dashboard session signed in for the app checks: dashboard/sessions.py)."""
        with self._db() as con:
            row = con.execute("SELECT salt FROM apps WHERE appid = ?", (appid,)).fetchone()
        return None if row is None else hashlib.sha256(b"grant\0" + row[0]).hexdigest()

    def apps(self) -> list[tuple[str, float]]:
        with self._db() as con:
            return list(con.execute("SELECT appid, created_at FROM apps ORDER BY appid"))

    def check_secret(self, appid: str | None, secret: str | None) -> str:
        """The appid if ``secret`` is its secret; 41002 / 41004 / 40013 / 40125 otherwise.

        A wrong secret is 40125 ``invalid appsecret``, as the live platform answers today
        (its docs still name 40001 for it; docs/api.md).
        """
        if not appid:
            raise AppIdMissing()
        if not secret:
            raise AppSecretMissing()
        with self._db() as con:
            row = con.execute(
                "SELECT salt, secret_hash FROM apps WHERE appid = ?", (appid,)
            ).fetchone()
        if row is None:
            raise InvalidAppId()
        mac = self._mac(appid, secret)
        seen = self._verified.get(appid)
        if seen is not None and seen[0] == row[0] and hmac.compare_digest(seen[1], mac):
            return appid
        if not hmac.compare_digest(hash_secret(secret, row[0]), row[1]):
            raise InvalidAppSecret()
        self._verified[appid] = (row[0], mac)
        return appid

    def _mac(self, appid: str, secret: str) -> bytes:
        message = b"secret\0" + appid.encode() + b"\0" + secret.encode()
        return hmac.new(self.key, message, hashlib.sha256).digest()

    def known_secret(self, appid: str | None, secret: str | None) -> bool:
        """Whether ``secret`` is the one last verified for ``appid`` (no scrypt, no I/O)."""
        seen = self._verified.get(appid or "")
        return bool(seen and secret) and hmac.compare_digest(
            seen[1] if seen else b"", self._mac(appid or "", secret or "")
        )

    # -- tokens ----------------------------------------------------------------------------
    def issue_token(self, appid: str | None, secret: str | None) -> Issued:
        """``/cgi-bin/token``: a new token; earlier ones keep at most the overlap."""
        appid = self.check_secret(appid, secret)
        now = self.now()
        with self._db() as con:
            con.execute(
                "UPDATE tokens SET expires_at = MIN(expires_at, ?) "
                "WHERE appid = ? AND kind = 'token' AND revoked_at IS NULL",
                (now + self.overlap, appid),
            )
            return self._new(con, appid, "token", now)

    def stable_token(self, appid: str | None, secret: str | None, force_refresh: bool) -> Issued:
        """``/cgi-bin/stable_token``: the same token while valid (refreshed near expiry)."""
        appid = self.check_secret(appid, secret)
        now = self.now()
        with self._db() as con, transaction(con):
            issued = self._stable(con, appid, force_refresh, now)
        return issued

    def _stable(self, con: sqlite3.Connection, appid: str, force: bool, now: float) -> Issued:
        row = con.execute(
            "SELECT digest, expires_at FROM tokens WHERE appid = ? AND kind = 'stable' "
            "AND revoked_at IS NULL AND expires_at > ? ORDER BY issued_at DESC LIMIT 1",
            (appid, now),
        ).fetchone()
        if force and self._may_force(con, appid, now):
            con.execute("INSERT INTO force_refresh(appid, at) VALUES (?, ?)", (appid, now))
            con.execute(
                "UPDATE tokens SET revoked_at = ? WHERE appid = ? AND kind = 'stable' "
                "AND revoked_at IS NULL",
                (now, appid),
            )
            return self._new(con, appid, "stable", now)
        if row is not None and row[1] - now > self.overlap:
            token = self._derived(con, appid)
            if token is not None and hmac.compare_digest(token_digest(token), row[0]):
                return Issued(token, int(row[1] - now))
        return self._new(con, appid, "stable", now)

    def _derived(self, con: sqlite3.Connection, appid: str, bump: bool = False) -> str | None:
        """The app's current stable token (after moving to a new epoch with ``bump``)."""
        if bump:
            con.execute(
                "INSERT INTO stable_epochs VALUES (?, 1) "
                "ON CONFLICT(appid) DO UPDATE SET epoch = epoch + 1",
                (appid,),
            )
        row = con.execute(
            "SELECT e.epoch, a.salt FROM stable_epochs e JOIN apps a USING (appid) WHERE appid = ?",
            (appid,),
        ).fetchone()
        return None if row is None else derive_stable(self.key, appid, row[1], row[0])

    def _may_force(self, con: sqlite3.Connection, appid: str, now: float) -> bool:
        recent = con.execute(
            "SELECT COUNT(*), MAX(at) FROM force_refresh WHERE appid = ? AND at > ?",
            (appid, now - 86_400),
        ).fetchone()
        count, last = recent
        return count < FORCE_REFRESH_PER_DAY and (last is None or now - last >= FORCE_REFRESH_GAP_S)

    def _new(self, con: sqlite3.Connection, appid: str, kind: str, now: float) -> Issued:
        # Tokens dead for a day are of no use, even to tell 40001 from 42001.
        dead = (appid, now - 86_400)
        con.execute("DELETE FROM tokens WHERE appid = ? AND expires_at < ?", dead)
        con.execute("DELETE FROM force_refresh WHERE appid = ? AND at < ?", dead)
        # A stable token is handed out again, so it is derived (keys.py), never stored.
        derived = self._derived(con, appid, bump=True) if kind == "stable" else None
        token = derived or secrets.token_urlsafe(96)
        con.execute(
            "INSERT INTO tokens(digest, appid, kind, issued_at, expires_at) VALUES (?, ?, ?, ?, ?)",
            (token_digest(token), appid, kind, now, now + self.ttl),
        )
        return Issued(token, self.ttl)

    def appid_for(self, token: str | None) -> str:
        """The appid a token belongs to; 41001 / 40001 / 42001 otherwise."""
        if not token:
            raise AccessTokenMissing()
        with self._db() as con:
            row = con.execute(
                "SELECT appid, issued_at, expires_at, revoked_at FROM tokens WHERE digest = ?",
                (token_digest(token),),
            ).fetchone()
        if row is None or row[3] is not None:
            raise InvalidCredential()
        appid, issued_at, expires_at, _ = row
        if expires_at <= self.now():
            if expires_at - issued_at < self.ttl:  # cut short by a newer token: "not latest"
                raise InvalidCredential()
            raise AccessTokenExpired()
        return str(appid)

    # -- ingest keys -----------------------------------------------------------------------
    def new_ingest_key(self, appid: str) -> str:
        """A new write-only key for ``appid``; the previous one stops working at once."""
        key = INGEST_KEY_PREFIX + secrets.token_urlsafe(32)
        with self._db() as con, transaction(con):
            if con.execute("SELECT 1 FROM apps WHERE appid = ?", (appid,)).fetchone() is None:
                raise InvalidAppId(f"{appid} is not registered")
            con.execute(
                "INSERT INTO ingest_keys(appid, digest, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT(appid) DO UPDATE SET digest = excluded.digest, "
                "created_at = excluded.created_at",
                (appid, token_digest(key), self.now()),
            )
        return key

    def appid_for_ingest_key(self, key: str | None) -> str:
        """The appid whose live ingest key ``key`` is; 41001 / 40001 otherwise."""
        if not key:
            raise AccessTokenMissing("send the app's ingest key as Authorization: Bearer KEY")
        with self._db() as con:
            row = con.execute(
                "SELECT appid FROM ingest_keys WHERE digest = ?", (token_digest(key),)
            ).fetchone()
        if row is None:
            raise InvalidCredential("not a live ingest key (userportrait apps ingest-key)")
        return str(row[0])
