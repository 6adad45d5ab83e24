"""Secrets at rest and brute-force limits (issue 16)."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sqlite3
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from tests.fixtures import A
from tests.server import BODY, PATH, SECRET, asgi_client, assert_error, prepare, token
from userportrait.app import create_app
from userportrait.auth import store as auth_store
from userportrait.auth.keys import KEY_FILE
from userportrait.auth.limits import SecretGuard
from userportrait.auth.store import AuthStore
from userportrait.errors import InvalidCredential, MinuteQuotaExceeded
from userportrait.settings import Settings

pytestmark = pytest.mark.anyio
STABLE = "/cgi-bin/stable_token"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def stable(c: httpx.AsyncClient, force: bool = False, secret: str = SECRET) -> httpx.Response:
    return await c.post(STABLE, json={"grant_type": "client_credential", "appid": A,
                                      "secret": secret, "force_refresh": force})  # fmt: skip


async def test_no_token_or_secret_in_the_data_dir_or_the_log(
    api_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    tokens: list[str] = []
    async with asgi_client(api_settings) as c:
        for _ in range(3):
            tokens.append(await token(c))
        for force in (False, False, True):
            res = await stable(c, force)
            tokens.append(res.json()["access_token"])
        assert tokens[3] == tokens[4] != tokens[5]  # the same stable token, then a new one
        assert_error(await stable(c, secret="wrong-secret"), 40125, "invalid appsecret")
        for t in tokens[1:3] + tokens[5:]:  # the first and the forced-out one are cut
            res = await c.post(PATH, params={"access_token": t}, json=BODY)
            assert "visit_uv" in res.json()
    # Restarted, the server derives the same stable token (its epoch and the key).
    async with asgi_client(api_settings) as c:
        assert (await stable(c)).json()["access_token"] == tokens[5]
    data = api_settings.data_dir
    needles = [t.encode() for t in set(tokens)] + [SECRET.encode(), b"wrong-secret"]
    files = [p for p in data.rglob("*") if p.is_file()]
    assert any(p.name == "meta.sqlite" for p in files) and len(files) > 5
    for p in files:
        raw = p.read_bytes()
        assert not [n for n in needles if n in raw], p
    # The server's own log (httpx's lines here are the test client's, not the server's).
    log = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("userportrait"))
    assert "access_token=***" in log and '"path": "/cgi-bin/token"' in log
    assert not [n for n in needles if n.decode() in log]
    # Only the owner can read any of it.
    assert mode(data) == 0o700
    for name in ("meta.sqlite", "catalog.sqlite", KEY_FILE):
        assert mode(data / name) == 0o600, name
    for p in data.glob("*.sqlite-*"):  # -wal/-shm while open: SQLite gives them the same mode
        assert mode(p) == 0o600, p


def test_plain_stable_tokens_of_older_versions_are_erased(tmp_path: Path) -> None:
    path = tmp_path / "meta.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE stable_plain (digest TEXT PRIMARY KEY, token TEXT)")
    con.execute("INSERT INTO stable_plain VALUES ('d', ?)", ("plain-token-" * 8,))
    con.commit()
    con.close()
    path.chmod(0o644)
    AuthStore(path)
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("meta.sqlite*"))
    assert b"plain-token-" not in raw and mode(path) == 0o600 and mode(tmp_path) == 0o700


class Clock:
    t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_failures_limited_per_appid_and_per_address() -> None:
    clock = Clock()
    guard = SecretGuard(per_app=3, per_client=5, now=clock)
    for i in range(3):
        guard.admit(A, f"10.0.0.{i}")
        guard.record(A, f"10.0.0.{i}", ok=False)
    with pytest.raises(MinuteQuotaExceeded, match=f"for {A}"):
        guard.admit(A, "10.0.0.9")
    guard.record(A, "10.0.0.7", ok=True)  # had given the right secret: not locked out
    guard.admit(A, "10.0.0.7")
    for _ in range(5):
        guard.record("wxother", "10.0.0.8", ok=False)
    with pytest.raises(MinuteQuotaExceeded, match="from this address"):
        guard.admit("wxthird", "10.0.0.8")
    clock.t += 61  # a sliding minute
    guard.admit(A, "10.0.0.9")
    guard.admit("wxthird", "10.0.0.8")


async def test_a_flood_of_wrong_secrets_stays_cheap(
    api_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = peak = calls = 0
    real = auth_store.hash_secret

    def counted(secret: str, salt: bytes) -> bytes:
        nonlocal running, peak, calls
        running += 1
        calls += 1
        peak = max(peak, running)
        try:
            return real(secret, salt)
        finally:
            running -= 1

    monkeypatch.setattr(auth_store, "hash_secret", counted)
    app = create_app(api_settings)
    async with LifespanManager(app) as manager:
        c = httpx.AsyncClient(transport=httpx.ASGITransport(manager.app), base_url="http://t")
        attacker = httpx.AsyncClient(
            transport=httpx.ASGITransport(manager.app, client=("203.0.113.9", 4000)),
            base_url="http://t",
        )
        await token(c)  # the rightful caller, once: its next checks skip scrypt
        params = {"grant_type": "client_credential", "appid": A}
        started = time.perf_counter()
        flood = [attacker.get("/cgi-bin/token", params={**params, "secret": f"guess-{i:04d}"})
                 for i in range(60)]  # fmt: skip
        results = await asyncio.gather(*flood, token(c), c.get("/healthz"))
        elapsed = time.perf_counter() - started
        # 10 wrong secrets a minute for the appid (then 45011, before any scrypt); the
        # rest of the burst found the 2 running and 8 waiting checks full: -1 busy, 503.
        more = await attacker.get("/cgi-bin/token", params={**params, "secret": "one-more"})
        assert_error(more, 45011, "api minute-quota reach limit")
        await token(c)  # the rightful caller's address is not locked out with the appid
        await c.aclose()
        await attacker.aclose()
    codes = sorted({r.json().get("errcode") for r in results[:60]})
    assert set(codes) <= {40125, 45011, -1}, codes
    assert all(r.status_code == 503 for r in results[:60] if r.json()["errcode"] == -1)
    assert results[61].status_code == 200
    assert calls <= 1 + 10 + 2 and peak <= 2, (calls, peak)  # 10 failures/min, 2 at once
    assert elapsed < 60, elapsed  # a hang guard, not a speed target (bench/secret_flood.py)


def test_data_dir_tightened_only_when_it_is_ours(tmp_path: Path) -> None:
    from userportrait.store.sqlite import private_dir

    ours, shared = tmp_path / "ours", tmp_path / "shared"
    ours.mkdir(mode=0o755)
    (ours / "catalog.sqlite").touch()
    shared.mkdir(mode=0o755)
    (shared / "someone-elses.txt").touch()
    ours.chmod(0o755)
    shared.chmod(0o755)
    private_dir(ours)
    private_dir(shared)
    assert mode(ours) == 0o700 and mode(shared) == 0o755
    private_dir(tmp_path / "new" / "data")
    assert mode(tmp_path / "new" / "data") == 0o700


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("runuser") is None, reason="needs root and runuser"
)
def test_another_local_user_reads_nothing(settings: Settings) -> None:
    """The issue's reproduction: as ``nobody``, read the token database and the key."""
    base = Path(tempfile.mkdtemp())  # pytest's tmp_path is 0700: nobody could not get in
    try:
        base.chmod(0o755)
        data = base / "data"
        prepare(settings.replace(data_dir=data))
        AuthStore(data / "meta.sqlite").stable_token(A, SECRET, False)

        def readable(name: str) -> bool:
            res = subprocess.run(["runuser", "-u", "nobody", "--", "cat", str(data / name)],
                                 capture_output=True)  # fmt: skip
            return res.returncode == 0

        names = ("meta.sqlite", KEY_FILE, "catalog.sqlite")
        assert not any(readable(n) for n in names)  # the 0700 directory stops it
        data.chmod(0o755)  # and were the directory opened up, the 0600 files still would
        assert not any(readable(n) for n in names)
        (data / "probe.txt").write_text("x")
        (data / "probe.txt").chmod(0o644)
        assert readable("probe.txt")  # (the check itself works)
    finally:
        shutil.rmtree(base)


async def test_guesses_sent_at_once_are_all_counted_before_any_runs() -> None:
    """A cheap check has no queue: 20 simultaneous guesses, at most ``per_app`` run."""
    guard = SecretGuard(per_app=3, per_client=0)
    ran = 0

    async def wrong() -> None:
        nonlocal ran
        ran += 1
        await asyncio.sleep(0.02)
        raise InvalidCredential("wrong admin key")

    answers = await asyncio.gather(
        *(guard.check("admin", f"10.0.0.{i}", wrong, cheap=True) for i in range(20)),
        return_exceptions=True,
    )
    assert ran == 3
    assert sum(isinstance(a, MinuteQuotaExceeded) for a in answers) == 17


async def test_a_right_check_held_is_taken_back() -> None:
    guard = SecretGuard(per_app=1, per_client=0)

    async def right() -> str:
        return "ok"

    for _ in range(5):
        assert await guard.check("app:x", "10.0.0.1", right, cheap=True) == "ok"
    assert await guard.check("app:x", "10.0.0.2", right, cheap=False) == "ok"


async def test_a_known_right_secret_sent_at_once_is_no_guess() -> None:
    """50 workers of one backend asking at once with the secret last verified right: none is
    held as a failure (with ``cheap`` the 21st was refused 45011 from the address)."""
    guard = SecretGuard(per_app=3, per_client=20)

    async def right() -> str:
        await asyncio.sleep(0.02)
        return "ok"

    answers = await asyncio.gather(
        *(guard.check("app:x", "10.0.0.1", right, cheap=True, known=True) for _ in range(50))
    )
    assert answers == ["ok"] * 50


async def test_a_known_secret_that_fails_after_all_is_counted() -> None:
    guard = SecretGuard(per_app=0, per_client=2)

    async def changed() -> None:
        raise InvalidCredential("the secret was reset meanwhile")

    for _ in range(2):
        with pytest.raises(InvalidCredential):
            await guard.check("app:x", "10.0.0.1", changed, cheap=True, known=True)
    with pytest.raises(MinuteQuotaExceeded):
        await guard.check("app:y", "10.0.0.1", changed, cheap=True)
