"""Third-party platform: wechatpy's WeChatComponent end to end, and the store's refusals."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from wechatpy.client import WeChatComponentClient
from wechatpy.component import WeChatComponent
from wechatpy.exceptions import WeChatClientException

from tests.api.test_wechatpy import cli_portrait
from tests.fixtures import WINDOW_0610_0612, A
from tests.server import BODY, CLOUD, PATH, assert_error, live_server
from userportrait.auth.component import ComponentStore
from userportrait.cli import cli
from userportrait.errors import (
    AccessTokenExpired,
    CodeExpired,
    CodeInvalid,
    InvalidAppId,
    InvalidAppSecret,
    NotAuthorized,
    RefreshTokenInvalid,
    TicketExpired,
    TicketInvalid,
)
from userportrait.settings import Settings

B = "wxb000000000000002"
COMP = "wxcomponent00000001"
COMP_SECRET = "component-secret"
ENDPOINT = PATH.lstrip("/")


def run(data_dir: Path, *args: str) -> str:
    """A CLI command; its last output line (the one value such commands print)."""
    res = CliRunner().invoke(cli, [*args, "--data-dir", str(data_dir)])
    assert res.exit_code == 0, res.output
    return res.output.splitlines()[-1]


def platform(base_url: str) -> WeChatComponent:
    """wechatpy's WeChatComponent with only its base URL moved."""

    class Pointed(WeChatComponent):  # type: ignore[misc]
        API_BASE_URL = base_url + "/cgi-bin"

    return Pointed(COMP, COMP_SECRET, "msg-token", "a" * 43)


def authorizer(base_url: str, appid: str, comp: WeChatComponent) -> WeChatComponentClient:
    class Pointed(WeChatComponentClient):  # type: ignore[misc]
        API_BASE_URL = base_url + "/"

    return Pointed(appid, comp, session=comp.session)


def test_wechatpy_component_end_to_end(api_settings: Settings) -> None:
    data = api_settings.data_dir
    run(data, "component", "add", "--component-appid", COMP, "--secret", COMP_SECRET)
    ticket = run(data, "component", "ticket", "--component-appid", COMP)
    assert run(data, "component", "ticket", "--component-appid", COMP) == ticket  # same for 10 min
    code = run(data, "component", "authorize", "--component-appid", COMP, "--appid", A,
               "--permissions", "1,18")  # fmt: skip
    with live_server(api_settings) as url:
        comp = platform(url)
        comp.session.set("component_verify_ticket", ticket)
        info = comp.query_auth(code)["authorization_info"]
        assert info["authorizer_appid"] == A and info["expires_in"] == 7200
        assert info["func_info"] == [{"funcscope_category": {"id": 1}},
                                     {"funcscope_category": {"id": 18}}]  # fmt: skip
        client = authorizer(url, A, comp)
        body = client.post(ENDPOINT, data=BODY)
        assert body == cli_portrait(data, A, "20240610", "20240612") == WINDOW_0610_0612
        with pytest.raises(WeChatClientException) as err:
            comp.query_auth(code)  # one-time
        assert err.value.errcode == 61009
        # refresh: a new authorizer token, the refresh token stays
        refreshed = comp.refresh_authorizer_token(A, info["authorizer_refresh_token"])
        assert refreshed["authorizer_refresh_token"] == info["authorizer_refresh_token"]
        assert refreshed["authorizer_access_token"] != info["authorizer_access_token"]
        with httpx.Client(base_url=url) as c:
            tok = {"access_token": refreshed["authorizer_access_token"]}
            assert c.post(PATH, params=tok, json=BODY).json() == WINDOW_0610_0612
            cloud = c.post(CLOUD, params=tok, json={"beginDate": "20240610", "endDate": "20240612"})
            assert cloud.json()["visitUv"] == WINDOW_0610_0612["visit_uv"]
            # a component token is never an app token
            comp_tok = {"access_token": comp.access_token}
            assert_error(c.post(PATH, params=comp_tok, json=BODY), 40001, "invalid credential")
        described = comp.get_authorizer_info(A)
        assert described["authorization_info"] == {"authorizer_appid": A,
                                                   "func_info": info["func_info"]}  # fmt: skip

        # B grants set 1 only: its token is refused on the datacube
        code_b = run(data, "component", "authorize", "--component-appid", COMP, "--appid", B,
                     "--permissions", "1")  # fmt: skip
        comp.query_auth(code_b)
        client_b = authorizer(url, B, comp)
        with pytest.raises(WeChatClientException) as err:
            client_b.post(ENDPOINT, data=BODY)
        assert err.value.errcode == 61007
        # with set 18 B's token reads B, never A
        code_b = run(data, "component", "authorize", "--component-appid", COMP, "--appid", B,
                     "--permissions", "18")  # fmt: skip
        comp.query_auth(code_b)
        body_b = client_b.post(ENDPOINT, data=BODY)
        assert body_b == cli_portrait(data, B, "20240610", "20240612") != body

        # revoked: A's tokens stop at once and the refresh token is dead
        old = comp.session.get(f"{A}_access_token")
        run(data, "component", "revoke", "--component-appid", COMP, "--appid", A)
        with httpx.Client(base_url=url) as c:
            assert_error(c.post(PATH, params={"access_token": old}, json=BODY), 40001, "invalid")
        with pytest.raises(WeChatClientException) as err:
            client.post(ENDPOINT, data=BODY)  # wechatpy refreshes on 40001: refused too
        assert err.value.errcode == 61023
        with pytest.raises(WeChatClientException) as err:
            comp.get_authorizer_info(A)
        assert err.value.errcode == 61003


def test_component_token_refusals(api_settings: Settings) -> None:
    data = api_settings.data_dir
    run(data, "component", "add", "--component-appid", COMP, "--secret", COMP_SECRET)
    ticket = run(data, "component", "ticket", "--component-appid", COMP)
    with live_server(api_settings) as url:
        comp = platform(url)
        for bad_ticket, errcode in ((None, 61006), ("ticket@@@nope", 61006)):
            comp.session.set("component_verify_ticket", bad_ticket)
            with pytest.raises(WeChatClientException) as err:
                comp.fetch_access_token()
            assert err.value.errcode == errcode
        comp.session.set("component_verify_ticket", ticket)
        comp.component_appsecret = "wrong-secret"
        with pytest.raises(WeChatClientException) as err:
            comp.fetch_access_token()
        assert err.value.errcode == 40125


class Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


def test_store_lifetimes(tmp_path: Path) -> None:
    clock = Clock()
    store = ComponentStore(tmp_path / "component.sqlite", now=clock)
    assert (tmp_path / "component.sqlite").stat().st_mode & 0o777 == 0o600
    store.add(COMP, COMP_SECRET)
    with pytest.raises(InvalidAppId):
        store.add(COMP, COMP_SECRET)
    with pytest.raises(InvalidAppId):
        store.ticket("wxnobody")
    ticket = store.ticket(COMP)
    clock.t += 601
    newer = store.ticket(COMP)
    assert newer != ticket
    store.component_token(COMP, COMP_SECRET, ticket)  # the old one still works (12 h)
    with pytest.raises(InvalidAppSecret):
        store.component_token(COMP, "wrong-secret", newer)
    clock.t += 12 * 3600
    with pytest.raises(TicketExpired):
        store.component_token(COMP, COMP_SECRET, ticket)
    with pytest.raises(TicketInvalid):
        store.component_token(COMP, COMP_SECRET, "x")
    token, expires_in = store.component_token(COMP, COMP_SECRET, store.ticket(COMP))
    assert store.component_for(token) == COMP and expires_in == 7200
    code = store.authorize(COMP, A, (1, 18))
    clock.t += 3601
    with pytest.raises(CodeExpired):
        store.query_auth(COMP, code)
    code = store.authorize(COMP, A, (1, 18))
    auth = store.query_auth(COMP, code)
    with pytest.raises(CodeInvalid):
        store.query_auth(COMP, code)  # spent
    assert store.authorizer(auth.access_token) == (COMP, A)
    with pytest.raises(RefreshTokenInvalid):
        store.refresh(COMP, B, auth.refresh_token)  # another app's refresh token
    clock.t += 7201
    with pytest.raises(AccessTokenExpired):
        store.authorizer(auth.access_token)
    with pytest.raises(AccessTokenExpired):
        store.component_for(token)
    fresh = store.refresh(COMP, A, auth.refresh_token)
    assert store.authorizer(fresh.access_token) == (COMP, A)
    store.revoke(COMP, A)
    with pytest.raises(NotAuthorized):
        store.revoke(COMP, A)
    with pytest.raises(RefreshTokenInvalid):
        store.refresh(COMP, A, auth.refresh_token)
