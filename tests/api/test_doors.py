"""Every door guarded alike (api/doors.py): the route table, failing closed, and each hole
that was found by getting in through a door other than the one a rule was built for."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from click.testing import CliRunner
from fastapi import FastAPI, Request

from tests.api.test_security import _security_on
from tests.fixtures import A
from tests.server import SECRET, assert_error, token
from userportrait.api import doors
from userportrait.api.doors import READS_APP, Step, door, route_doors
from userportrait.api.errors import WeChatJSON
from userportrait.app import create_app
from userportrait.auth.policy import Policy
from userportrait.auth.store import AuthStore
from userportrait.cli import cli
from userportrait.dashboard.sessions import write_admin_key
from userportrait.settings import Settings

pytestmark = pytest.mark.anyio
S = Step
WINDOW = {"begin": "20240610", "end": "20240612"}
PORTRAIT = f"/v1/apps/{A}/portrait"
COMP, COMP_SECRET = "wxc0000000000000c1", "platform-secret-1"
JSON = {"content-type": "application/json"}
#: Every route, with the steps its requests pass through (docs/api.md "Doors").
EXPECTED: dict[tuple[str, str], frozenset[Step]] = {
    ("GET", "/"): frozenset(),
    ("GET", "/assets/{path}"): frozenset(),
    ("GET", "/docs"): frozenset(),
    ("GET", "/openapi.json"): frozenset(),
    ("GET", "/healthz"): frozenset(),
    ("GET", "/metrics"): frozenset({S.SECRET}),
    ("GET", "/cgi-bin/token"): frozenset({S.ALLOW_LIST, S.SECRET}),
    ("POST", "/cgi-bin/stable_token"): frozenset({S.BODY, S.ALLOW_LIST, S.SECRET}),
    ("POST", "/datacube/getweanalysisappiduserportrait"): frozenset(
        {S.READ, S.ALLOW_LIST, S.BODY, S.SECURITY, S.QUOTA, S.THRESHOLD}
    ),
    ("POST", "/wxa/cloud/analysis.getUserPortrait"): frozenset(
        {S.READ, S.ALLOW_LIST, S.BODY, S.SECURITY, S.QUOTA, S.THRESHOLD}
    ),
    ("POST", "/cgi-bin/component/api_component_token"): frozenset({S.BODY, S.SECRET}),
    ("POST", "/cgi-bin/component/api_create_preauthcode"): frozenset({S.PLATFORM, S.BODY}),
    ("POST", "/cgi-bin/component/api_query_auth"): frozenset({S.PLATFORM, S.BODY}),
    ("POST", "/cgi-bin/component/api_authorizer_token"): frozenset({S.PLATFORM, S.BODY}),
    ("POST", "/cgi-bin/component/api_get_authorizer_info"): frozenset({S.PLATFORM, S.BODY}),
    ("GET", "/v1/apps/{appid}/portrait"): frozenset(READS_APP),
    ("POST", "/v1/events"): frozenset({S.WRITE, S.ALLOW_LIST, S.BODY}),
    ("POST", "/v1/profiles"): frozenset({S.WRITE, S.ALLOW_LIST, S.BODY}),
    ("POST", "/v1/forget"): frozenset({S.WRITE, S.ALLOW_LIST, S.BODY}),
    ("POST", "/dashboard/signin"): frozenset({S.SAME_ORIGIN, S.BODY, S.ALLOW_LIST, S.SECRET}),
    ("POST", "/dashboard/signout"): frozenset(),
    ("GET", "/dashboard/me"): frozenset({S.READ}),
    ("GET", "/dashboard/trend"): frozenset(READS_APP),
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def client_from(
    settings: Settings, address: str = "127.0.0.1", app: FastAPI | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process, called from ``address``."""
    async with LifespanManager(app or create_app(settings)) as manager:
        transport = httpx.ASGITransport(app=manager.app, client=(address, 50_000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


def test_every_route_declares_its_door(api_settings: Settings) -> None:
    """All routes, those left out of /openapi.json too, and the steps of each."""
    app = create_app(api_settings)
    assert route_doors(app) == EXPECTED
    schema = set(app.openapi()["paths"])
    assert {"/dashboard/signin", "/dashboard/trend", "/"} - schema  # enumerated all the same


def test_a_route_without_a_door_is_refused_at_start(api_settings: Settings) -> None:
    app = FastAPI(docs_url=None, redoc_url=None)

    @app.get("/open")
    async def open_route() -> dict[str, int]:
        return {}

    with pytest.raises(RuntimeError, match="/open declares no door"):
        doors.install(app)


async def test_a_success_that_skipped_a_declared_step_fails_closed(
    api_settings: Settings,
) -> None:
    app = create_app(api_settings)

    @app.get("/forgot-a-step")
    @door(Step.ALLOW_LIST, Step.THRESHOLD)
    async def forgot(request: Request) -> WeChatJSON:
        doors.passed(request, Step.ALLOW_LIST)
        return WeChatJSON({"secret": "data"})

    async with client_from(api_settings, app=app) as c:
        res = await c.get("/forgot-a-step")
        assert "data" not in res.text
        assert_error(res, -1, "system error: admission incomplete")


# -- 1. the dashboard sign-in is throttled like /cgi-bin/token ------------------------------------
async def test_signin_guesses_are_throttled(api_settings: Settings) -> None:
    write_admin_key(api_settings.data_dir, "the-admin-key-0001")
    cfg = api_settings.replace(secret_failures_per_app=3, secret_failures_per_client=5)
    async with client_from(cfg, "198.51.100.1") as c:
        for _ in range(3):
            res = await c.post("/dashboard/signin", json={"appid": A, "secret": "wrong-guess"})
            assert_error(res, 40125, "invalid appsecret")
        res = await c.post("/dashboard/signin", json={"appid": A, "secret": "wrong-guess"})
        assert_error(res, 45011, "api minute-quota reach limit")
        assert f"too many wrong secrets for {A}" in res.json()["errmsg"]
        # The app's own /cgi-bin/token shares the count: the same door, the same limit.
        res = await c.get("/cgi-bin/token", params={
            "grant_type": "client_credential", "appid": A, "secret": "wrong-guess"})  # fmt: skip
        assert_error(res, 45011, "api minute-quota reach limit")
    async with client_from(cfg, "198.51.100.2") as c:
        for _ in range(5):
            res = await c.post("/dashboard/signin", json={"admin_key": "guess-guess-guess"})
            assert res.json()["errcode"] in (40001, 45011)
        res = await c.post("/dashboard/signin", json={"admin_key": "the-admin-key-0001"})
        assert_error(res, 45011, "api minute-quota reach limit")  # this address is held back
    async with client_from(cfg, "198.51.100.3") as c:
        for _ in range(5):
            res = await c.post("/dashboard/signin", json={"code": "a-made-up-code"})
            assert res.json()["errcode"] in (40001, 45011)
        res = await c.post("/dashboard/signin", json={"code": "a-made-up-code"})
        assert_error(res, 45011, "api minute-quota reach limit")


# -- 2. api_component_token: the ticket first, and throttled --------------------------------------
async def test_component_token_checks_the_ticket_first_and_is_throttled(
    api_settings: Settings,
) -> None:
    runner = CliRunner()
    data = ["--data-dir", str(api_settings.data_dir)]
    res = runner.invoke(cli, ["component", "add", "--component-appid", COMP, "--secret", COMP_SECRET, *data])  # fmt: skip
    assert res.exit_code == 0, res.output
    ticket = runner.invoke(cli, ["component", "ticket", "--component-appid", COMP, *data])
    ticket_text = ticket.output.splitlines()[-1]
    cfg = api_settings.replace(secret_failures_per_app=3, secret_failures_per_client=0)
    path = "/cgi-bin/component/api_component_token"
    body = {"component_appid": COMP, "component_appsecret": "guess"}
    async with client_from(cfg) as c:
        # Without the ticket a secret is never tried: 61006 whatever the secret.
        res = await c.post(path, json={**body, "component_verify_ticket": "no-ticket"})
        assert_error(res, 61006, "component ticket is invalid")
        for _ in range(3):  # the wrong ticket was counted apart: a right one is no licence
            res = await c.post(path, json={**body, "component_verify_ticket": ticket_text})
            assert_error(res, 40125, "invalid appsecret")
        res = await c.post(path, json={**body, "component_verify_ticket": ticket_text})
        assert_error(res, 45011, "api minute-quota reach limit")


# -- 4. the app's policy on every route that reads its data ---------------------------------------
async def test_allow_list_holds_on_the_dashboard_sign_in(api_settings: Settings) -> None:
    Policy(api_settings.data_dir / "access.sqlite").set_allowed(A, ["203.0.113.0/24"])
    async with client_from(api_settings, "198.51.100.7") as c:
        res = await c.post("/dashboard/signin", json={"appid": A, "secret": SECRET})
        assert_error(res, 40164, "invalid ip 198.51.100.7")
    async with client_from(api_settings, "203.0.113.7") as c:
        res = await c.post("/dashboard/signin", json={"appid": A, "secret": SECRET})
        assert res.json()["errcode"] == 0


async def test_an_api_security_app_gets_no_plaintext_portrait(
    api_settings: Settings, tmp_path: Path
) -> None:
    write_admin_key(api_settings.data_dir, "the-admin-key-0001")
    async with client_from(api_settings) as c:
        t = await token(c)
        assert (await c.get(PORTRAIT, params={**WINDOW, "access_token": t})).json()["ref_date"]
        _security_on(api_settings.data_dir, A, tmp_path)
        res = await c.get(PORTRAIT, params={**WINDOW, "access_token": t})
        assert_error(res, 48001, f"api unauthorized: {A} is in API-security mode")
        res = await c.post("/dashboard/signin", json={"admin_key": "the-admin-key-0001"})
        assert res.json()["errcode"] == 0
        for path, params in ((PORTRAIT, WINDOW), ("/dashboard/trend", {**WINDOW, "appid": A})):
            assert_error(await c.get(path, params=params), 48001, "api unauthorized")


# -- 5. a session ends with what granted it -------------------------------------------------------
async def test_sessions_end_when_their_grant_changes(api_settings: Settings) -> None:
    data = api_settings.data_dir
    write_admin_key(data, "the-admin-key-0001")
    async with client_from(api_settings) as app_c:
        admin_c = httpx.AsyncClient(transport=app_c._transport, base_url="http://testserver")
        assert (await app_c.post("/dashboard/signin", json={"appid": A, "secret": SECRET})).json()[
            "errcode"
        ] == 0
        res = await admin_c.post("/dashboard/signin", json={"admin_key": "the-admin-key-0001"})
        assert res.json()["errcode"] == 0
        for c in (app_c, admin_c):
            assert (await c.get(PORTRAIT, params=WINDOW)).json()["ref_date"]
        AuthStore(data / "meta.sqlite").set_secret(A, "a-new-secret-0002")  # apps rotate-secret
        assert_error(await app_c.get(PORTRAIT, params=WINDOW), 40001, "invalid credential")
        assert (await admin_c.get(PORTRAIT, params=WINDOW)).json()["ref_date"]
        write_admin_key(data, "the-admin-key-0002")
        assert_error(await admin_c.get("/dashboard/me"), 40001, "invalid credential")
        res = await app_c.post(
            "/dashboard/signin", json={"appid": A, "secret": "a-new-secret-0002"}
        )
        assert res.json()["errcode"] == 0
        AuthStore(data / "meta.sqlite").remove_app(A)  # apps remove
        assert_error(await app_c.get(PORTRAIT, params=WINDOW), 40001, "invalid credential")


# -- 10. the strict parser on the sign-in and component routes ------------------------------------
HOSTILE = [
    b"[" * 2_000 + b"]" * 2_000,
    b'{"appid": ' + b"[" * 2_000 + b"]" * 2_000 + b"}",
    b'{"appid": ' + b"9" * 5_000 + b"}",
    b'{"appid": "\\ud800", "secret": "x"}',
    b'{"appid": "\xff"}',
]


@pytest.mark.parametrize(
    "raw", HOSTILE, ids=["nested", "nested-value", "bigint", "surrogate", "utf8"]
)
async def test_hostile_json_is_a_format_error_not_a_crash(
    api_settings: Settings, raw: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    async with client_from(api_settings) as c:
        for path in ("/dashboard/signin", "/cgi-bin/component/api_component_token"):
            for body in (raw, gzip.compress(raw)):
                headers = {**JSON, "content-encoding": "gzip"} if body is not raw else JSON
                res = await c.post(path, content=body, headers=headers)
                assert res.json()["errcode"] == 47001, (path, res.text)
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


# -- 11. login CSRF -------------------------------------------------------------------------------
async def test_signin_takes_json_from_this_origin_only(api_settings: Settings) -> None:
    form = f'{{"appid": "{A}", "secret": "{SECRET}"}}'.encode()
    async with client_from(api_settings) as c:
        for headers in (
            {"content-type": "text/plain"},  # what a form on another site can send
            {"content-type": "application/x-www-form-urlencoded"},
            {**JSON, "origin": "https://evil.example"},
        ):
            res = await c.post("/dashboard/signin", content=form, headers=headers)
            assert_error(res, 48001, "api unauthorized")
            assert "set-cookie" not in res.headers
        ok = await c.post(
            "/dashboard/signin", content=form, headers={**JSON, "origin": "http://testserver"}
        )
        assert ok.json()["errcode"] == 0


async def test_a_platform_is_not_queued_behind_wrong_tickets(api_settings: Settings) -> None:
    """Wrong tickets fail before the scrypt queue, and the platform's repeat call skips it."""
    runner = CliRunner()
    data = ["--data-dir", str(api_settings.data_dir)]
    runner.invoke(cli, ["component", "add", "--component-appid", COMP, "--secret", COMP_SECRET, *data])  # fmt: skip
    ticket = runner.invoke(cli, ["component", "ticket", "--component-appid", COMP, *data])
    right = {"component_appid": COMP, "component_appsecret": COMP_SECRET,
             "component_verify_ticket": ticket.output.splitlines()[-1]}  # fmt: skip
    path = "/cgi-bin/component/api_component_token"
    app = create_app(api_settings)
    async with client_from(api_settings, app=app) as c:
        assert "component_access_token" in (await c.post(path, json=right)).json()
        app.state.guard.queue = 0  # from now on any call that would queue for scrypt is -1 busy
        res = await c.post(path, json={**right, "component_verify_ticket": "nope"})
        assert_error(res, 61006, "component ticket is invalid")
        assert "component_access_token" in (await c.post(path, json=right)).json()
