"""IP allow-lists (40164) with and without a trusted proxy; quotas per Asia/Shanghai day across restarts."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from click.testing import CliRunner

from tests.fixtures import WINDOW_0610_0612, A
from tests.server import BODY, PATH, SECRET, asgi_client, assert_error, live_server
from userportrait.app import create_app
from userportrait.auth.allowlist import check, client_address, parse_networks
from userportrait.auth.policy import Policy
from userportrait.auth.quota import Quota
from userportrait.cli import cli
from userportrait.errors import DailyQuotaExceeded, InvalidRequest, IpNotAllowed
from userportrait.settings import Settings

pytestmark = pytest.mark.anyio
TOKEN = "/cgi-bin/token"
GRANT = {"grant_type": "client_credential", "appid": A, "secret": SECRET}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def calling_from(settings: Settings, host: str) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process, every request arriving from ``host``."""
    async with LifespanManager(create_app(settings)) as manager:
        transport = httpx.ASGITransport(app=manager.app, client=(host, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


def allow(data_dir: Path, *args: str) -> str:
    res = CliRunner().invoke(cli, ["apps", "allow-ip", "--appid", A, *args, "--data-dir", str(data_dir)])  # fmt: skip
    assert res.exit_code == 0, res.output
    return res.output.strip()


def test_addresses_and_messages() -> None:
    trusted = parse_networks(["127.0.0.1", "10.0.0.0/8"])
    assert client_address("127.0.0.1", "203.0.113.9", trusted) == "203.0.113.9"
    assert client_address("127.0.0.1", "203.0.113.9, 10.1.1.1", trusted) == "203.0.113.9"
    assert client_address("127.0.0.1", "10.1.2.3, 198.51.100.1", trusted) == "198.51.100.1"
    assert client_address("198.51.100.1", "10.1.2.3", trusted) == "198.51.100.1"  # untrusted peer
    assert client_address("127.0.0.1", "203.0.113.9", []) == "127.0.0.1"
    assert client_address("::ffff:127.0.0.1", None, trusted) == "127.0.0.1"
    with pytest.raises(IpNotAllowed) as info:
        check("116.25.45.231", parse_networks(["10.0.0.0/8"]))
    assert (
        info.value.message == "invalid ip 116.25.45.231 ipv6 ::ffff:116.25.45.231, not in whitelist"
    )
    with pytest.raises(IpNotAllowed) as info:
        check("2001:db8::1", parse_networks(["10.0.0.0/8"]))
    assert info.value.message == "invalid ip 2001:db8::1, not in whitelist"
    check("2001:db8::1", parse_networks(["2001:db8::/32"]))
    check("anything", [])
    with pytest.raises(InvalidRequest):
        parse_networks(["10.0.0.0/33"])


async def test_allow_list_without_a_proxy(api_settings: Settings) -> None:
    data = api_settings.data_dir
    assert (
        allow(data, "10.0.0.0/8", "192.168.1.7") == f"{A} may call from: 10.0.0.0/8, 192.168.1.7/32"
    )
    async with calling_from(api_settings, "10.1.2.3") as inside:
        tok = {"access_token": (await inside.get(TOKEN, params=GRANT)).json()["access_token"]}
        assert (await inside.post(PATH, params=tok, json=BODY)).json() == WINDOW_0610_0612
    async with calling_from(api_settings, "127.0.0.1") as outside:
        assert_error(await outside.get(TOKEN, params=GRANT), 40164,
                     "invalid ip 127.0.0.1 ipv6 ::ffff:127.0.0.1, not in whitelist")  # fmt: skip
        assert_error(await outside.post("/cgi-bin/stable_token", json=GRANT), 40164, "invalid ip")
        # a token got inside is refused outside; a forwarded header is not believed
        res = await outside.post(PATH, params=tok, json=BODY, headers={"X-Forwarded-For": "10.1.2.3"})  # fmt: skip
        assert_error(res, 40164, "invalid ip 127.0.0.1")
        native = await outside.get(f"/v1/apps/{A}/portrait", params={**tok, "begin": "20240610", "end": "20240612"})  # fmt: skip
        assert_error(native, 40164, "invalid ip 127.0.0.1")
    assert allow(data, "--clear") == f"{A} may call from anywhere"
    async with calling_from(api_settings, "127.0.0.1") as outside:
        assert (await outside.post(PATH, params=tok, json=BODY)).json() == WINDOW_0610_0612


async def test_allow_list_behind_a_trusted_proxy(api_settings: Settings) -> None:
    allow(api_settings.data_dir, "203.0.113.0/24")
    proxied = api_settings.replace(trusted_proxies="127.0.0.1, 10.0.0.0/8")
    async with calling_from(proxied, "127.0.0.1") as c:
        via = {"X-Forwarded-For": "203.0.113.9, 10.0.0.2"}
        res = await c.get(TOKEN, params=GRANT, headers=via)
        tok = {"access_token": res.json()["access_token"]}
        assert (await c.post(PATH, params=tok, json=BODY, headers=via)).json() == WINDOW_0610_0612
        # a client cannot spoof its way in: the hop left of the trusted proxies counts
        spoof = {"X-Forwarded-For": "203.0.113.9, 198.51.100.7"}
        assert_error(await c.post(PATH, params=tok, json=BODY, headers=spoof), 40164,
                     "invalid ip 198.51.100.7 ipv6 ::ffff:198.51.100.7")  # fmt: skip
        assert_error(await c.post(PATH, params=tok, json=BODY), 40164, "invalid ip 127.0.0.1")
    async with calling_from(proxied, "198.51.100.7") as c:  # not a proxy: its header is ignored
        res = await c.post(PATH, params=tok, json=BODY, headers=via)
        assert_error(res, 40164, "invalid ip 198.51.100.7")


async def test_daily_quota_survives_a_restart(api_settings: Settings) -> None:
    limited = api_settings.replace(quota_per_day=2)
    async with asgi_client(limited) as c:
        tok = {"access_token": (await c.get(TOKEN, params=GRANT)).json()["access_token"]}
        for _ in range(2):
            assert (await c.post(PATH, params=tok, json=BODY)).status_code == 200
    async with asgi_client(limited) as c:  # a restart
        assert_error(await c.post(PATH, params=tok, json=BODY), 45009, "reach max api daily quota")


def test_quota_days_are_shanghai_days(tmp_path: Path) -> None:
    before = dt.datetime(2024, 6, 10, 15, 59, 59, tzinfo=dt.UTC).timestamp()  # 23:59:59 +08
    t = [before]
    policy = Policy(tmp_path / "access.sqlite")
    Quota(1, 0, now=lambda: t[0], policy=policy).charge(A)
    policy.close()
    policy = Policy(tmp_path / "access.sqlite")  # a restart
    again = Quota(1, 0, now=lambda: t[0], policy=policy)
    with pytest.raises(DailyQuotaExceeded):
        again.charge(A)
    again.charge("wxother")  # per app
    t[0] = before + 1  # 16:00:00Z: midnight in Asia/Shanghai, a new day
    again.charge(A)
    with pytest.raises(DailyQuotaExceeded):
        again.charge(A)
    policy.close()
    assert (tmp_path / "access.sqlite").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("trusted", ["", "127.0.0.1"])
def test_the_real_server_believes_forwarded_for_only_from_trusted_proxies(
    api_settings: Settings, trusted: str
) -> None:
    """uvicorn itself must not rewrite the peer from X-Forwarded-For (issue 24): its default
    trusts 127.0.0.1, which let any local client name an allow-listed address."""
    allow(api_settings.data_dir, "203.0.113.9")
    with live_server(api_settings.replace(trusted_proxies=trusted)) as url:
        spoof = {"X-Forwarded-For": "203.0.113.9"}
        res = httpx.get(url + TOKEN, params=GRANT, headers=spoof, timeout=30)
        if trusted:
            assert res.json()["expires_in"] == 7200, res.text
        else:
            assert_error(res, 40164, "invalid ip 127.0.0.1 ipv6 ::ffff:127.0.0.1")
