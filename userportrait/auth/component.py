"""Third-party platforms (第三方平台) and the apps that authorised them, in ``component.sqlite``.

The flow WeChat runs, with the CLI standing in for WeChat's push and QR-code page:
``component add`` registers a platform (secret scrypt-hashed); ``component ticket`` hands
out the ``component_verify_ticket`` WeChat would push every 10 minutes (valid 12 h);
``component authorize`` records an app's grant of permission sets and prints a one-time
``authorization_code`` (1 h). The platform then trades ticket -> ``component_access_token``
and code -> ``authorizer_access_token`` + ``authorizer_refresh_token`` over HTTP. Only
digests of tokens and codes are stored; revoking a grant deletes its codes and tokens.
"""

from __future__ import annotations

import hmac
import json
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from userportrait.auth.digests import hash_secret, token_digest
from userportrait.auth.ticket_push import Callback, aes_key
from userportrait.errors import (
    AccessTokenExpired,
    AccessTokenMissing,
    AppIdMissing,
    AppSecretMissing,
    CodeExpired,
    CodeInvalid,
    ComponentApiUnauthorized,
    InvalidAppId,
    InvalidAppSecret,
    InvalidCredential,
    InvalidRequest,
    NotAuthorized,
    RefreshTokenInvalid,
    TicketExpired,
    TicketInvalid,
)
from userportrait.store.sqlite import open_db, private_file, transaction

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS components (
    component_appid TEXT PRIMARY KEY, salt BLOB NOT NULL, secret_hash BLOB NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tickets (
    ticket TEXT PRIMARY KEY, component_appid TEXT NOT NULL, issued_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS grants (
    component_appid TEXT NOT NULL, appid TEXT NOT NULL, func_info TEXT NOT NULL,
    granted_at REAL NOT NULL, PRIMARY KEY (component_appid, appid)
);
CREATE TABLE IF NOT EXISTS tokens (
    digest TEXT PRIMARY KEY, kind TEXT NOT NULL, component_appid TEXT NOT NULL,
    appid TEXT, issued_at REAL NOT NULL, expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tokens_grant ON tokens(component_appid, appid);
CREATE TABLE IF NOT EXISTS callbacks (
    component_appid TEXT PRIMARY KEY, url TEXT NOT NULL, token TEXT NOT NULL,
    encoding_aes_key TEXT NOT NULL
);
"""
Kind = Literal["component", "preauth", "code", "authorizer", "refresh"]
#: Lifetimes as WeChat's: tokens 2 h, pre-auth code 30 min, authorization code 1 h,
#: a ticket 12 h and a new one every 10 min; refresh tokens last until revoked.
LIFETIME_S: Final[dict[str, float]] = {
    "component": 7200, "preauth": 1800, "code": 3600, "authorizer": 7200, "refresh": 1e12,
}  # fmt: skip
TICKET_LIFETIME_S: Final = 12 * 3600
TICKET_INTERVAL_S: Final = 600
#: 数据分析 (data analysis): the permission set getUserPortrait needs (docs/api.md).
DATA_ANALYSIS: Final = 18


@dataclass(frozen=True, slots=True)
class Authorization:
    """What ``api_query_auth`` / ``api_authorizer_token`` hand a platform."""

    appid: str
    access_token: str
    expires_in: int
    refresh_token: str
    func_info: tuple[int, ...]


def parse_permissions(text: str) -> tuple[int, ...]:
    """``"1,18"`` -> ``(1, 18)``; WeChat's permission set ids are positive integers."""
    try:
        ids = sorted({int(p) for p in text.split(",") if p.strip()})
    except ValueError:
        raise InvalidRequest(f"permissions {text!r}: comma-separated set ids, e.g. 1,18") from None
    if not ids or ids[0] < 1:
        raise InvalidRequest("permissions: at least one set id, each >= 1")
    return tuple(ids)


def _check_appid(appid: str) -> None:
    from userportrait.portrait.rules import appid_problem

    problem = appid_problem(appid)
    if problem:
        raise InvalidAppId(f"{appid[:64]!r}: {problem}")


class ComponentStore:
    def __init__(self, path: Path, *, now: Callable[[], float] = time.time) -> None:
        self.path = private_file(path)
        self.now = now
        # component_appid -> (salt, keyed hash) of the secret last verified, in memory only:
        # the platform's repeat call skips scrypt and the guard's queue (auth/limits.py).
        self._key = secrets.token_bytes(32)
        self._verified: dict[str, tuple[bytes, bytes]] = {}
        with self._db() as con:
            con.executescript(SCHEMA)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with open_db(self.path) as con:
            yield con

    # -- what the CLI does (WeChat's side) ---------------------------------------------------
    def add(self, component_appid: str, secret: str) -> None:
        _check_appid(component_appid)
        if len(secret) < 8:
            raise InvalidRequest("secret must be at least 8 characters")
        salt = secrets.token_bytes(16)
        with self._db() as con:
            try:
                con.execute(
                    "INSERT INTO components VALUES (?, ?, ?, ?)",
                    (component_appid, salt, hash_secret(secret, salt), self.now()),
                )
            except sqlite3.IntegrityError:
                raise InvalidAppId(f"{component_appid} is registered already") from None

    def ticket(self, component_appid: str) -> str:
        """The current component_verify_ticket; a new one once the last is 10 min old."""
        now = self.now()
        with self._db() as con, transaction(con):
            self._component(con, component_appid)
            row = con.execute(
                "SELECT ticket FROM tickets WHERE component_appid = ? AND issued_at > ? "
                "ORDER BY issued_at DESC LIMIT 1",
                (component_appid, now - TICKET_INTERVAL_S),
            ).fetchone()
            if row is not None:
                return str(row[0])
            con.execute("DELETE FROM tickets WHERE issued_at < ?", (now - 2 * TICKET_LIFETIME_S,))
            ticket = "ticket@@@" + secrets.token_urlsafe(48)
            con.execute("INSERT INTO tickets VALUES (?, ?, ?)", (ticket, component_appid, now))
            return ticket

    def authorize(self, component_appid: str, appid: str, func_info: tuple[int, ...]) -> str:
        """Record ``appid``'s grant of ``func_info`` to the platform; a one-time code."""
        _check_appid(appid)
        now = self.now()
        with self._db() as con, transaction(con):
            self._component(con, component_appid)
            con.execute(
                "INSERT INTO grants VALUES (?, ?, ?, ?) ON CONFLICT (component_appid, appid) "
                "DO UPDATE SET func_info = excluded.func_info, granted_at = excluded.granted_at",
                (component_appid, appid, json.dumps(list(func_info)), now),
            )
            return self._new(con, "code", component_appid, appid, now, prefix="queryauthcode@@@")

    def revoke(self, component_appid: str, appid: str) -> None:
        """The app withdraws its grant: its codes and tokens stop working at once."""
        with self._db() as con, transaction(con):
            gone = con.execute(
                "DELETE FROM grants WHERE component_appid = ? AND appid = ?",
                (component_appid, appid),
            ).rowcount
            if gone == 0:
                raise NotAuthorized(f"{appid} has not authorised {component_appid}")
            con.execute(
                "DELETE FROM tokens WHERE component_appid = ? AND appid = ?",
                (component_appid, appid),
            )

    def set_callback(self, callback: Callback | None, component_appid: str) -> None:
        """Where the server pushes the platform's tickets (None: nowhere)."""
        with self._db() as con, transaction(con):
            self._component(con, component_appid)
            con.execute("DELETE FROM callbacks WHERE component_appid = ?", (component_appid,))
            if callback is not None:
                aes_key(callback.encoding_aes_key)  # refuse a key WeChat would not issue
                if not callback.url.startswith(("http://", "https://")):
                    raise InvalidRequest("callback URL must be http(s)://…")
                con.execute(
                    "INSERT INTO callbacks VALUES (?, ?, ?, ?)",
                    (component_appid, callback.url, callback.token, callback.encoding_aes_key),
                )

    def callbacks(self) -> list[Callback]:
        with self._db() as con:
            rows = con.execute("SELECT * FROM callbacks ORDER BY component_appid").fetchall()
        return [Callback(*row) for row in rows]

    def grants(self, component_appid: str) -> list[tuple[str, tuple[int, ...]]]:
        with self._db() as con:
            rows = con.execute(
                "SELECT appid, func_info FROM grants WHERE component_appid = ? ORDER BY appid",
                (component_appid,),
            ).fetchall()
        return [(appid, tuple(json.loads(f))) for appid, f in rows]

    # -- the platform's HTTP calls -------------------------------------------------------------
    def check_ticket(self, component_appid: str | None, ticket: str | None) -> None:
        """The platform exists and ``ticket`` is its current one (no older than 12 h).

        Checked before the secret, and apart from it: the ticket reaches only the platform's
        callback URL, so a guesser without it never gets to try a secret, nor to queue for
        a scrypt check (``api/component.py``)."""
        if not component_appid:
            raise AppIdMissing("component_appid missing")
        with self._db() as con:
            self._component(con, component_appid)
            row = con.execute(
                "SELECT issued_at FROM tickets WHERE ticket = ? AND component_appid = ?",
                (ticket or "", component_appid),
            ).fetchone()
        if row is None:
            raise TicketInvalid()
        if self.now() - row[0] > TICKET_LIFETIME_S:
            raise TicketExpired()

    def _mac(self, component_appid: str, secret: str) -> bytes:
        message = component_appid.encode() + b"\0" + secret.encode()
        return hmac.new(self._key, message, "sha256").digest()

    def known_secret(self, component_appid: str | None, secret: str | None) -> bool:
        """Whether ``secret`` is the one last verified for the platform (no scrypt, no I/O)."""
        seen = self._verified.get(component_appid or "")
        return bool(seen and secret) and hmac.compare_digest(
            seen[1] if seen else b"", self._mac(component_appid or "", secret or "")
        )

    def component_token(self, component_appid: str | None, secret: str | None, ticket: str | None) -> tuple[str, int]:  # fmt: skip
        """``api_component_token``: a ticket no older than 12 h, then the secret."""
        self.check_ticket(component_appid, ticket)
        assert component_appid is not None  # check_ticket refused a missing one
        if not secret:
            raise AppSecretMissing("component_appsecret missing")
        now = self.now()
        with self._db() as con, transaction(con):
            salt, digest = self._component(con, component_appid)
            seen = self._verified.get(component_appid)
            mac = self._mac(component_appid, secret)
            if seen is None or seen[0] != salt or not hmac.compare_digest(seen[1], mac):
                if not hmac.compare_digest(hash_secret(secret, salt), digest):
                    raise InvalidAppSecret()
                self._verified[component_appid] = (salt, mac)
            return self._new(con, "component", component_appid, None, now), int(
                LIFETIME_S["component"]
            )

    def component_for(self, token: str | None) -> str:
        """The component_appid a component_access_token belongs to (41001/40001/42001)."""
        if not token:
            raise AccessTokenMissing("component_access_token missing")
        with self._db() as con:
            comp, _ = self._token(con, "component", token)
        return comp

    def preauth_code(self, component_appid: str) -> tuple[str, int]:
        now = self.now()
        with self._db() as con:
            code = self._new(con, "preauth", component_appid, None, now, prefix="preauthcode@@@")
        return code, int(LIFETIME_S["preauth"])

    def query_auth(self, component_appid: str, code: str | None) -> Authorization:
        """``api_query_auth``: the one-time code -> authorizer access and refresh tokens."""
        now = self.now()
        with self._db() as con, transaction(con):
            row = con.execute(
                "SELECT appid, expires_at FROM tokens WHERE digest = ? AND kind = 'code' "
                "AND component_appid = ?",
                (token_digest(code or ""), component_appid),
            ).fetchone()
            if row is None:
                raise CodeInvalid()
            con.execute("DELETE FROM tokens WHERE digest = ?", (token_digest(code or ""),))
            if row[1] <= now:
                raise CodeExpired()
            appid = str(row[0])
            refresh = self._new(
                con, "refresh", component_appid, appid, now, prefix="refreshtoken@@@"
            )
            return self._authorizer(con, component_appid, appid, refresh, now)

    def refresh(self, component_appid: str, appid: str | None, refresh_token: str | None) -> Authorization:  # fmt: skip
        """``api_authorizer_token``: a new authorizer token; the refresh token stays."""
        now = self.now()
        with self._db() as con, transaction(con):
            row = con.execute(
                "SELECT 1 FROM tokens WHERE digest = ? AND kind = 'refresh' "
                "AND component_appid = ? AND appid = ?",
                (token_digest(refresh_token or ""), component_appid, appid or ""),
            ).fetchone()
            if row is None or not appid or not refresh_token:
                raise RefreshTokenInvalid()
            return self._authorizer(con, component_appid, appid, refresh_token, now)

    def authorizer_info(self, component_appid: str, appid: str | None) -> tuple[int, ...]:
        """The permission sets ``appid`` granted the platform (61003 if none)."""
        with self._db() as con:
            return self._func_info(con, component_appid, appid or "")

    def authorizer(self, token: str, func: int = DATA_ANALYSIS) -> tuple[str, str]:
        """(component_appid, appid) of an authorizer_access_token whose grant has ``func``."""
        with self._db() as con:
            comp, appid = self._token(con, "authorizer", token)
            if func not in self._func_info(con, comp, appid):
                raise ComponentApiUnauthorized(f"permission set {func} not granted by {appid}")
        return comp, appid

    # -- helpers --------------------------------------------------------------------------------
    def _component(self, con: sqlite3.Connection, component_appid: str) -> tuple[bytes, bytes]:
        row = con.execute(
            "SELECT salt, secret_hash FROM components WHERE component_appid = ?",
            (component_appid,),
        ).fetchone()
        if row is None:
            raise InvalidAppId(f"{component_appid} is not a registered component")
        return row[0], row[1]

    def _func_info(self, con: sqlite3.Connection, comp: str, appid: str) -> tuple[int, ...]:
        row = con.execute(
            "SELECT func_info FROM grants WHERE component_appid = ? AND appid = ?", (comp, appid)
        ).fetchone()
        if row is None:
            raise NotAuthorized()
        return tuple(json.loads(row[0]))

    def _token(self, con: sqlite3.Connection, kind: Kind, token: str) -> tuple[str, str]:
        row = con.execute(
            "SELECT component_appid, appid, expires_at FROM tokens WHERE digest = ? AND kind = ?",
            (token_digest(token), kind),
        ).fetchone()
        if row is None:
            raise InvalidCredential()
        if row[2] <= self.now():
            raise AccessTokenExpired()
        return str(row[0]), str(row[1])

    def _authorizer(self, con: sqlite3.Connection, comp: str, appid: str, refresh: str, now: float) -> Authorization:  # fmt: skip
        func_info = self._func_info(con, comp, appid)
        token = self._new(con, "authorizer", comp, appid, now)
        return Authorization(appid, token, int(LIFETIME_S["authorizer"]), refresh, func_info)

    def _new(self, con: sqlite3.Connection, kind: Kind, comp: str, appid: str | None, now: float, prefix: str = "") -> str:  # fmt: skip
        # Tokens dead for a day are of no use, even to tell 40001 from 42001.
        con.execute("DELETE FROM tokens WHERE expires_at < ?", (now - 86_400,))
        token = prefix + secrets.token_urlsafe(96 if not prefix else 32)
        con.execute(
            "INSERT INTO tokens VALUES (?, ?, ?, ?, ?, ?)",
            (token_digest(token), kind, comp, appid, now, now + LIFETIME_S[kind]),
        )
        return token
