"""Apps and access tokens: WeChat's lifetimes, overlap and stable_token rules (clock injected)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.fixtures import A
from tests.server import BODY, PATH, SECRET, app_client, asgi_client, assert_error, token
from userportrait.app import create_app
from userportrait.auth.store import AuthStore
from userportrait.errors import (
    AccessTokenExpired,
    AccessTokenMissing,
    AppIdMissing,
    AppSecretMissing,
    InvalidAppId,
    InvalidAppSecret,
    InvalidCredential,
)
from userportrait.settings import Settings

T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> AuthStore:
    s = AuthStore(tmp_path / "meta.sqlite", now=clock)
    s.add_app(A, SECRET)
    return s


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_secrets_checked_and_never_stored_plain(store: AuthStore, tmp_path: Path) -> None:
    for args, exc in [((None, SECRET), AppIdMissing), ((A, ""), AppSecretMissing),
                      (("wxnobody", SECRET), InvalidAppId), ((A, "wrong-secret"), InvalidAppSecret)]:  # fmt: skip
        with pytest.raises(exc):
            store.issue_token(*args)
    issued = store.issue_token(A, SECRET)
    assert len(issued.token) >= 64 and issued.expires_in == 7200
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("meta.sqlite*"))
    assert SECRET.encode() not in raw and issued.token.encode() not in raw
    con = sqlite3.connect(tmp_path / "meta.sqlite")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_new_token_leaves_the_old_one_five_minutes(store: AuthStore, clock: Clock) -> None:
    first = store.issue_token(A, SECRET).token
    clock.t += 1000
    second = store.issue_token(A, SECRET).token
    assert store.appid_for(first) == A and store.appid_for(second) == A
    clock.t += 299
    assert store.appid_for(first) == A
    clock.t += 2
    with pytest.raises(InvalidCredential):  # superseded: "invalid or not latest"
        store.appid_for(first)
    assert store.appid_for(second) == A
    clock.t += 7200 - 301
    with pytest.raises(AccessTokenExpired):  # ran out: 42001
        store.appid_for(second)
    with pytest.raises(AccessTokenMissing):
        store.appid_for("")
    with pytest.raises(InvalidCredential):
        store.appid_for("x" * 128)


def test_overlap_does_not_extend_an_older_cut(store: AuthStore, clock: Clock) -> None:
    t1 = store.issue_token(A, SECRET).token
    store.issue_token(A, SECRET)
    clock.t += 200
    store.issue_token(A, SECRET)  # t1 keeps its original 300 s, not 200 + 300
    clock.t += 101
    with pytest.raises(InvalidCredential):
        store.appid_for(t1)


def test_stable_token_same_token_counting_down(store: AuthStore, clock: Clock) -> None:
    s1 = store.stable_token(A, SECRET, False)
    clock.t += 100
    s2 = store.stable_token(A, SECRET, False)
    assert s2.token == s1.token and s2.expires_in == 7100
    ordinary = store.issue_token(A, SECRET)  # isolated: does not cut the stable token
    clock.t += 6799
    s3 = store.stable_token(A, SECRET, False)
    assert s3.token == s1.token and s3.expires_in == 301
    clock.t += 2  # 299 s left: refreshed 5 min before expiry; the old one still works
    s4 = store.stable_token(A, SECRET, False)
    assert s4.token != s1.token and s4.expires_in == 7200
    assert store.appid_for(s1.token) == A
    assert store.appid_for(ordinary.token) == A  # not cut by the stable refresh either


def test_force_refresh_limits(store: AuthStore, clock: Clock) -> None:
    s1 = store.stable_token(A, SECRET, False)
    ordinary = store.issue_token(A, SECRET).token
    s2 = store.stable_token(A, SECRET, True)
    assert s2.token != s1.token and s2.expires_in == 7200
    with pytest.raises(InvalidCredential):
        store.appid_for(s1.token)
    assert store.appid_for(ordinary) == A  # cgi-bin/token tokens are untouched
    clock.t += 29
    assert store.stable_token(A, SECRET, True).token == s2.token  # < 30 s apart: unchanged
    tokens = {s2.token}
    for _ in range(19):
        clock.t += 30
        tokens.add(store.stable_token(A, SECRET, True).token)
    assert len(tokens) == 20  # 20 refreshes in the day so far
    clock.t += 30
    assert store.stable_token(A, SECRET, True).token in tokens  # 21st: refused, same token
    clock.t += 86_400
    assert store.stable_token(A, SECRET, True).token not in tokens


def test_rotate_secret_and_remove(store: AuthStore) -> None:
    t = store.issue_token(A, SECRET).token
    s = store.stable_token(A, SECRET, False).token
    store.set_secret(A, "another-secret")
    for old in (t, s):
        with pytest.raises(InvalidCredential):
            store.appid_for(old)
    with pytest.raises(InvalidAppSecret):
        store.issue_token(A, SECRET)
    t2 = store.issue_token(A, "another-secret").token
    store.remove_app(A)
    with pytest.raises(InvalidCredential):
        store.appid_for(t2)
    assert store.apps() == []


@pytest.mark.anyio
async def test_token_routes(api_settings: Settings) -> None:
    async with asgi_client(api_settings) as c:
        t1 = await token(c)
        res = await c.post(
            "/cgi-bin/stable_token",
            json={"grant_type": "client_credential", "appid": A, "secret": SECRET},
        )
        stable = res.json()
        assert set(stable) == {"access_token", "expires_in"} and stable["expires_in"] == 7200
        # wechatpy-style: no Content-Type; the same token again
        raw = b'{"grant_type":"client_credential","appid":"%s","secret":"%s","force_refresh":false}'
        again = await c.post("/cgi-bin/stable_token", content=raw % (A.encode(), SECRET.encode()))
        assert again.json()["access_token"] == stable["access_token"]
        for t in (t1, stable["access_token"]):
            assert (await c.post(PATH, params={"access_token": t}, json=BODY)).status_code == 200


@pytest.mark.anyio
async def test_tokens_over_http_with_a_clock(api_settings: Settings, clock: Clock) -> None:
    app = create_app(api_settings)
    async with app_client(app) as c:
        app.state.auth.now = clock
        old = await token(c)
        await token(c)
        clock.t += 301
        res = await c.post(PATH, params={"access_token": old}, json=BODY)
        assert_error(res, 40001, "invalid credential, access_token is invalid or not latest")
        fresh = await token(c)
        clock.t += 7200
        assert_error(
            await c.post(PATH, params={"access_token": fresh}, json=BODY),
            42001,
            "access_token expired",
        )


@pytest.mark.anyio
async def test_tokens_survive_a_restart(api_settings: Settings) -> None:
    async with asgi_client(api_settings) as c:
        t = await token(c)
    async with asgi_client(api_settings) as c:  # a new app on the same data dir
        res = await c.post(PATH, params={"access_token": t}, json=BODY)
        assert res.status_code == 200 and "visit_uv" in res.json()
