"""Credentials by scope (docs/api.md): the ingest key writes and never reads; read
tokens read and never write. The attack they close: a reader posting fake users with a
folded value to learn, by subtraction, the count the small-count threshold hid."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from typing import Any

import pytest
from click.testing import CliRunner

from tests.fixtures import A
from tests.server import (
    CLOUD,
    PATH,
    SECRET,
    asgi_client,
    assert_cloud_error,
    assert_error,
    live_server,
    token,
)
from tests.server import ingest_headers as key_headers
from userportrait.auth.store import INGEST_KEY_PREFIX, AuthStore
from userportrait.cli import cli
from userportrait.client import Client, EventsNotSent
from userportrait.errors import AccessTokenMissing, InvalidAppId, InvalidCredential, Unauthorized
from userportrait.settings import Settings

pytestmark = pytest.mark.anyio
NATIVE = f"/v1/apps/{A}/portrait"
WEEK = {"begin": "20240606", "end": "20240612"}
WRITES_NEED_THE_KEY = "api unauthorized: writes need the app's ingest key"
#: Five made-up users of the week, all in the 17岁以下 age row that k=2 folds into 其他.
FAKES = [{"appid": A, "openid": f"fake{i}", "ts": "2024-06-10T10:00:00+08:00", "age": 15}
         for i in range(5)]  # fmt: skip


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def live(api_settings: Settings) -> Settings:
    return api_settings.replace(live_flush_interval_ms=100)


def run_cli(settings: Settings, *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(cli, [*args, "--data-dir", str(settings.data_dir)])
    return res.exit_code, res.output


def ages(body: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = body["visit_uv"]["ages"]
    return rows


async def test_threshold_injection_with_a_read_token_is_refused(live: Settings) -> None:
    assert run_cli(live, "apps", "threshold", "--appid", A, "--k", "2")[0] == 0
    async with asgi_client(live) as c:
        t = await token(c)
        before = (await c.get(NATIVE, params={**WEEK, "access_token": t})).json()
        # 17岁以下 (1) and 30-39岁 (1) are folded: the reader sees only 其他 = 2.
        assert ages(before) == [{"id": 0, "name": "未知", "value": 2},
                                {"id": 99, "name": "其他", "value": 2}]  # fmt: skip
        # The attack: 5 backdated fakes aged 15 would lift 17岁以下 to 6 >= k, shown as 6,
        # and 6 - 5 = the one real user the threshold hid. The read token cannot post them.
        res = await c.post("/v1/events", params={"access_token": t}, json=FAKES)
        assert_error(res, 48001, WRITES_NEED_THE_KEY)
        assert "userportrait apps ingest-key" in res.json()["errmsg"]
        res = await c.post("/v1/events", headers={"Authorization": f"Bearer {t}"}, json=FAKES)
        assert_error(res, 48001, WRITES_NEED_THE_KEY)
        res = await c.post("/v1/profiles", params={"access_token": t}, json=FAKES)
        assert_error(res, 48001, WRITES_NEED_THE_KEY)
        # Control: the same events with the ingest key (the data owner's) would reveal it.
        res = await c.post("/v1/events", headers=key_headers(live), json=FAKES)
        assert res.json() == {"errcode": 0, "errmsg": "ok", "accepted": 5, "rejected": []}
        deadline = time.monotonic() + 20
        while (body := (await c.get(NATIVE, params={**WEEK, "access_token": t})).json()) == before:
            assert time.monotonic() < deadline, "the owner's events did not become visible"
            time.sleep(0.05)
        assert {"id": 1, "name": "17岁以下", "value": 6} in ages(body)


async def test_the_ingest_key_cannot_read(api_settings: Settings) -> None:
    headers = key_headers(api_settings)
    key = headers["Authorization"].removeprefix("Bearer ")
    assert key.startswith(INGEST_KEY_PREFIX)
    async with asgi_client(api_settings) as c:
        invalid = "invalid credential, access_token is invalid or not latest"
        assert_error(await c.get(NATIVE, params={**WEEK, "access_token": key}), 40001, invalid)
        assert_error(await c.get(NATIVE, params=WEEK, headers=headers), 40001, invalid)
        body = {"begin_date": "20240610", "end_date": "20240612"}
        assert_error(await c.post(PATH, params={"access_token": key}, json=body), 40001, invalid)
        res = await c.post(CLOUD, params={"access_token": key},
                           json={"beginDate": "20240610", "endDate": "20240612"})  # fmt: skip
        assert_cloud_error(res, 40001, invalid)
        # ... and it writes
        res = await c.post("/v1/events", headers=headers, json=FAKES[:1])
        assert res.json()["accepted"] == 1


def new_key_in_another_process(settings: Settings) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "userportrait", "apps", "ingest-key", "--appid", A,
         "--data-dir", str(settings.data_dir)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()[-1]


async def test_rotation_and_removal_retire_the_key_at_once(api_settings: Settings) -> None:
    old = key_headers(api_settings)
    async with asgi_client(api_settings) as c:
        assert (await c.post("/v1/events", headers=old, json=FAKES[:1])).json()["accepted"] == 1
        new = {"Authorization": f"Bearer {new_key_in_another_process(api_settings)}"}
        # the running server sees the CLI's rotation on the very next request
        assert_error(await c.post("/v1/events", headers=old, json=FAKES[:1]), 40001,
                     "invalid credential, access_token is invalid or not latest: not a live")  # fmt: skip
        assert (await c.post("/v1/events", headers=new, json=FAKES[:1])).json()["accepted"] == 1
        assert run_cli(api_settings, "apps", "remove", "--appid", A)[0] == 0
        assert_error(await c.post("/v1/events", headers=new, json=FAKES[:1]), 40001,
                     "invalid credential")  # fmt: skip
    with sqlite3.connect(api_settings.data_dir / "meta.sqlite") as con:
        assert con.execute("SELECT count(*) FROM ingest_keys").fetchone() == (0,)


async def test_the_write_routes_keep_the_allow_list(api_settings: Settings) -> None:
    headers = key_headers(api_settings)
    assert run_cli(api_settings, "apps", "allow-ip", "--appid", A, "10.0.0.0/8")[0] == 0
    async with asgi_client(api_settings) as c:  # httpx's ASGI transport calls from 127.0.0.1
        for route in ("/v1/events", "/v1/profiles"):
            res = await c.post(route, headers=headers, json=FAKES[:1])
            assert_error(res, 40164, "invalid ip 127.0.0.1")


def test_store_keeps_one_digest_per_app(api_settings: Settings) -> None:
    path = api_settings.data_dir / "meta.sqlite"
    store = AuthStore(path)
    first, second = store.new_ingest_key(A), store.new_ingest_key(A)
    assert first != second and len(second) == len(INGEST_KEY_PREFIX) + 43
    assert store.appid_for_ingest_key(second) == A
    with pytest.raises(InvalidCredential):
        store.appid_for_ingest_key(first)  # retired by the second
    with pytest.raises(AccessTokenMissing):
        store.appid_for_ingest_key(None)
    with pytest.raises(AccessTokenMissing):
        store.appid_for_ingest_key("")
    with pytest.raises(InvalidAppId, match="wxnobody is not registered"):
        store.new_ingest_key("wxnobody")
    with pytest.raises(InvalidCredential):
        store.appid_for(second)  # not a token either
    assert store.appid_for_ingest_key(second) == A  # another AuthStore (process) sees it too
    for name in (path, path.with_name("meta.sqlite-wal")):
        if name.exists():
            assert second.encode() not in name.read_bytes()  # only its SHA-256 is kept


def test_client_sends_with_the_key_and_reads_with_the_secret(api_settings: Settings) -> None:
    key = AuthStore(api_settings.data_dir / "meta.sqlite").new_ingest_key(A)
    event = {"openid": "client-fake", "ts": "2024-06-10T10:00:00+08:00"}
    with live_server(api_settings) as url:
        with Client(url, A, SECRET, ingest_key=key) as c:
            assert c.send_events([event]).accepted == 1
            assert c.native_portrait("20240610", "20240612")["ref_date"] == "20240610-20240612"
            t = c.access_token()
        with Client(url, A, ingest_key=t) as c, pytest.raises(EventsNotSent) as info:
            c.send_events([event])  # a read token given as the key: refused, not retried
        assert isinstance(info.value.error, Unauthorized)
        assert info.value.summary.requests == 1
