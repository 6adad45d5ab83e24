"""API-security mode: the guide's official vectors, a client written from the spec, every refusal."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fixtures import WINDOW_0610_0612, A
from tests.server import BODY, CLOUD, PATH, WECHAT_JSON, assert_error, live_server, token
from tests.signing_client import (
    AES_KEY,
    AES_SN,
    APP_KEY_SN,
    APPID,
    REQUEST_BODY,
    REQUEST_PLAINTEXT,
    REQUEST_SIGNATURE,
    REQUEST_TS,
    RESPONSE_BODY,
    RESPONSE_PLAINTEXT,
    RESPONSE_SIGNATURE,
    RESPONSE_TS,
    URLPATH,
    SigningClient,
    app_public_pem,
    compact,
    platform_cert_key,
)
from userportrait.auth.security import (
    AppKeys,
    load_public_key,
    open_request,
    platform_key,
    seal_response,
)
from userportrait.auth.store import AuthStore
from userportrait.cli import cli
from userportrait.errors import ServiceError
from userportrait.settings import Settings

KEYS = AppKeys(APPID, base64.b64decode(AES_KEY), AES_SN, load_public_key(app_public_pem()), APP_KEY_SN)  # fmt: skip
OFFICIAL_HEADERS = {
    "Wechatmp-Appid": APPID,
    "Wechatmp-TimeStamp": str(REQUEST_TS),
    "Wechatmp-Signature": REQUEST_SIGNATURE,
}
SEALED_URL = "https://api.weixin.qq.com" + PATH


def _params(plain: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in plain.items() if not k.startswith("_")}


def test_official_request_vector_verifies_and_decrypts() -> None:
    body = compact(REQUEST_BODY)
    assert len(body) == 324  # the guide's Content-Length
    opened = open_request(KEYS, URLPATH, OFFICIAL_HEADERS, body, now=REQUEST_TS + 5, window_s=300)
    assert opened.nonce == REQUEST_PLAINTEXT["_n"] and opened.timestamp == REQUEST_TS
    assert opened.params == _params(REQUEST_PLAINTEXT)


def test_the_test_client_reads_the_official_response() -> None:
    """The independent client is right: it verifies and decrypts the guide's response."""
    body = compact(RESPONSE_BODY)
    string = f"{URLPATH}\n{APPID}\n{RESPONSE_TS}\n".encode() + body
    assert hashlib.sha256(string).hexdigest() == (
        "f797cafd9e323df336fb427569fbe67e20d5bc96dd68a3f54d66b54e6e08bb27"
    )  # the guide's H0
    headers = {"Wechatmp-Appid": APPID, "Wechatmp-TimeStamp": str(RESPONSE_TS),
               "Wechatmp-Signature": RESPONSE_SIGNATURE}  # fmt: skip
    assert (
        SigningClient(APPID).open(URLPATH, headers, body, platform_cert_key()) == RESPONSE_PLAINTEXT
    )


def test_server_response_opens_with_the_independent_client(tmp_path: Path) -> None:
    platform = platform_key(tmp_path)
    assert (tmp_path / "platform_key.pem").stat().st_mode & 0o777 == 0o600
    assert platform_key(tmp_path).serial == platform.serial  # generated once, then reused
    payload = {"errcode": 0, "errmsg": "ok", "name": "广东省"}
    headers, body = seal_response(KEYS, platform, URLPATH, payload, now=RESPONSE_TS)
    assert headers["Wechatmp-Serial"] == platform.serial
    plain = SigningClient(APPID).open(URLPATH, headers, body, platform.private_key.public_key())
    assert plain == {"_n": plain["_n"], "_appid": APPID, "_timestamp": RESPONSE_TS, **payload}
    assert list(plain)[:3] == ["_n", "_appid", "_timestamp"]  # as in the official example


def _refusal(mutate: Callable[[dict[str, str], bytes], tuple[dict[str, str], bytes]]) -> int:
    headers, body = mutate(dict(OFFICIAL_HEADERS), compact(REQUEST_BODY))
    with pytest.raises(ServiceError) as info:
        open_request(KEYS, URLPATH, headers, body, now=REQUEST_TS, window_s=300)
    return info.value.errcode


def _without(name: str) -> Callable[[dict[str, str], bytes], tuple[dict[str, str], bytes]]:
    return lambda h, b: ({k: v for k, v in h.items() if k != name}, b)


def _resealed(**kwargs: Any) -> Callable[[dict[str, str], bytes], tuple[dict[str, str], bytes]]:
    """A request signed with the right key but sealed wrong by the client."""
    client_args = {k: kwargs.pop(k) for k in ("aes_key_b64", "aes_sn") if k in kwargs}
    client = SigningClient(APPID, **client_args)
    return lambda h, b: client.seal(URLPATH, {"openid": "o"}, REQUEST_TS, **kwargs)


@pytest.mark.parametrize(
    ("mutate", "errcode"),
    [
        (_without("Wechatmp-Appid"), 40233),
        (lambda h, b: ({**h, "Wechatmp-Appid": "wxsomeoneelse"}, b), 40237),
        (_without("Wechatmp-TimeStamp"), 40231),
        (lambda h, b: ({**h, "Wechatmp-TimeStamp": str(REQUEST_TS - 301)}, b), 40240),
        (lambda h, b: ({**h, "Wechatmp-TimeStamp": "yesterday"}, b), 40240),
        (_without("Wechatmp-Signature"), 40232),
        (lambda h, b: ({**h, "Wechatmp-Signature": RESPONSE_SIGNATURE}, b), 40234),
        (lambda h, b: ({**h, "Wechatmp-Signature": "%%%"}, b), 40234),
        (lambda h, b: (h, b.replace(b"5qeM", b"6qeM")), 40234),  # signed bytes changed
        (lambda h, b: ({**h, "Wechatmp-Serial": "0" * 32}, b), 40239),
        (_resealed(aes_key_b64=base64.b64encode(b"k" * 32).decode()), 40235),  # bad tag
        (_resealed(aes_sn="other-sn"), 40235),
        (_resealed(_n=""), 40235),
        (_resealed(_appid="wxsomeoneelse"), 40236),
        (_resealed(_timestamp=REQUEST_TS - 1), 40240),
    ],
)  # fmt: skip
def test_refusals(mutate: Any, errcode: int) -> None:
    assert _refusal(mutate) == errcode


def _security_on(data_dir: Path, appid: str, tmp_path: Path) -> rsa.RSAPublicKey:
    """``apps security`` on with the guide's keys; the platform key as the CLI prints it."""
    pem = tmp_path / "app_public.pem"
    pem.write_bytes(app_public_pem())
    runner = CliRunner()
    res = runner.invoke(cli, ["apps", "security", "--appid", appid, "--aes-key", AES_KEY,
                              "--aes-sn", AES_SN, "--public-key", str(pem),
                              "--public-key-sn", APP_KEY_SN, "--data-dir", str(data_dir)])  # fmt: skip
    assert res.exit_code == 0, res.output
    shown = runner.invoke(
        cli,
        ["apps", "security", "--appid", appid, "--show-platform-key", "--data-dir", str(data_dir)],
    )
    lines = shown.output.splitlines()
    assert len(lines[-1]) == 32  # the serial, alone on the last line
    key = serialization.load_pem_public_key("\n".join(lines[:-1]).encode())
    assert isinstance(key, rsa.RSAPublicKey)
    return key


def test_sealed_portrait_end_to_end(api_settings: Settings, tmp_path: Path) -> None:
    """A real server (uvicorn): sealed request in, sealed and signed answer out."""
    data = api_settings.data_dir
    AuthStore(data / "meta.sqlite").add_app("wxb000000000000002", "s3cret-other")
    platform = _security_on(data, A, tmp_path)
    client = SigningClient(A)
    with live_server(api_settings) as url, httpx.Client(base_url=url) as c:
        tok = {"access_token": c.get("/cgi-bin/token", params={"grant_type": "client_credential", "appid": A, "secret": "s3cret-s3cret"}).json()["access_token"]}  # fmt: skip
        headers, body = client.seal(SEALED_URL, BODY, int(time.time()))
        res = c.post(PATH, params=tok, headers=headers, content=body)
        assert res.status_code == 200 and res.headers["content-type"] == WECHAT_JSON
        names = [k for k, _ in res.headers.raw]
        for name in (b"Wechatmp-Appid", b"Wechatmp-TimeStamp", b"Wechatmp-Serial", b"Wechatmp-Signature"):  # fmt: skip
            assert name in names  # WxJava's case-sensitive lookup (docs/api.md "API-security mode")
        plain = client.open(SEALED_URL, res.headers, res.content, platform)
        assert plain["_appid"] == A and _params(plain) == WINDOW_0610_0612
        # the same request again: a replay
        assert_error(c.post(PATH, params=tok, headers=headers, content=body), 40240, "API_Expired")
        # plaintext to an app that requires security
        assert_error(c.post(PATH, params=tok, json=BODY), 40233, "API_Missing_Wechatmp_Appid")
        # errors stay plaintext, as WeChat's
        bad = {"begin_date": "20240612", "end_date": "20240610"}
        headers, body = client.seal(SEALED_URL, bad, int(time.time()))
        assert_error(c.post(PATH, params=tok, headers=headers, content=body), 61501, "date range")
        # signed for the server's own URL, not WeChat's canonical one
        headers, body = client.seal(url + PATH, BODY, int(time.time()))
        assert_error(c.post(PATH, params=tok, headers=headers, content=body), 40234, "API_Invalid_Signature")  # fmt: skip
        # another app's token with A's sealed request
        other = c.get("/cgi-bin/token", params={"grant_type": "client_credential", "appid": "wxb000000000000002", "secret": "s3cret-other"}).json()  # fmt: skip
        headers, body = client.seal(SEALED_URL, BODY, int(time.time()))
        res = c.post(PATH, params={"access_token": other["access_token"]}, headers=headers, content=body)  # fmt: skip
        assert_error(res, 40238, "API_NoExist_DevSecretSym")  # B has no keys
        # the cloud-call route takes the same envelope
        cloud_url = "https://api.weixin.qq.com" + CLOUD
        headers, body = client.seal(cloud_url, {"beginDate": "20240610", "endDate": "20240612"}, int(time.time()))  # fmt: skip
        res = c.post(CLOUD, params=tok, headers=headers, content=body)
        assert client.open(cloud_url, res.headers, res.content, platform)["refDate"] == "20240610-20240612"  # fmt: skip
    res2 = CliRunner().invoke(cli, ["apps", "security", "--appid", A, "--off", "--data-dir", str(data)])  # fmt: skip
    assert res2.exit_code == 0, res2.output


@pytest.mark.anyio
async def test_off_and_wrong_token_app(api_settings: Settings, tmp_path: Path) -> None:
    from tests.server import asgi_client

    data = api_settings.data_dir
    AuthStore(data / "meta.sqlite").add_app("wxb000000000000002", "s3cret-other")
    _security_on(data, "wxb000000000000002", tmp_path)
    async with asgi_client(api_settings) as c:
        tok = {"access_token": await token(c)}
        # A's token, but the headers name B (which has keys): appid and token do not match
        headers, body = SigningClient("wxb000000000000002").seal(SEALED_URL, BODY, int(time.time()))  # fmt: skip
        assert_error(await c.post(PATH, params=tok, headers=headers, content=body), 40238, "API_NoExist")  # fmt: skip
        # A itself is in plaintext mode
        assert (await c.post(PATH, params=tok, json=BODY)).json() == WINDOW_0610_0612
    _security_on(data, A, tmp_path)
    async with asgi_client(api_settings) as c:
        tok = {"access_token": await token(c)}
        headers, body = SigningClient("wxb000000000000002").seal(SEALED_URL, BODY, int(time.time()))  # fmt: skip
        assert_error(await c.post(PATH, params=tok, headers=headers, content=body), 40237, "API_Invalid_Wechatmp_Appidmatch")  # fmt: skip
    off = CliRunner().invoke(cli, ["apps", "security", "--appid", A, "--off", "--data-dir", str(data)])  # fmt: skip
    assert off.output.strip() == f"API-security mode off for {A}"
    async with asgi_client(api_settings) as c:
        tok = {"access_token": await token(c)}
        assert (await c.post(PATH, params=tok, json=BODY)).json() == WINDOW_0610_0612


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
