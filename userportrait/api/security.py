"""The door of the datacube routes: who calls, from where, sealed or not, how often.

``admit`` runs the checks in WeChat's order — token (app or authorizer, 41001/40001/42001/
61007), IP allow-list (40164, app tokens only), API-security envelope (40231-40240),
quota (45009/45011) — and yields the plaintext body; ``respond`` seals the answer when
the request was sealed. Errors are always plaintext, as WeChat's are (WxJava reads the raw
body for ``errcode`` before it decrypts; wechat-protocol §5.4).

``ingest_app`` is the door of the write routes (``POST /v1/events``, ``/v1/profiles``):
only the app's ingest key opens it (issue 24).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import Response

from userportrait.api.body import read_body
from userportrait.api.errors import WECHAT_JSON, WeChatJSON
from userportrait.auth import allowlist
from userportrait.auth.security import (
    APPID_HEADER,
    SIGNATURE_HEADER,
    AppKeys,
    PlatformKey,
    open_request,
    platform_key,
    seal_response,
)
from userportrait.errors import AuthError, InvalidCredential, NoSymmetricKey, Unauthorized

_key_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class Admitted:
    appid: str
    body: bytes
    keys: AppKeys | None
    urlpath: str


def client_address(request: Request) -> str:
    peer = request.client.host if request.client else None
    return allowlist.client_address(
        peer, request.headers.get("x-forwarded-for"), request.app.state.trusted_proxies
    )


async def check_ip(request: Request, appid: str) -> None:
    nets = await run_in_threadpool(request.app.state.policy.allowed, appid)
    allowlist.check(client_address(request), nets)


WRITES_NEED_THE_KEY = (
    "writes need the app's ingest key as Authorization: Bearer KEY "
    "(userportrait apps ingest-key --appid APPID); access tokens only read"
)


async def ingest_app(request: Request) -> str:
    """The appid whose ingest key the request carries (``Authorization: Bearer KEY``).

    A read token instead (``access_token=`` or Bearer) is 48001, so a reader cannot post
    fake users past the small-count threshold (docs/privacy.md); the app's IP allow-list
    holds here as on every route of the app.
    """
    state = request.app.state
    header = request.headers.get("authorization", "")
    key = header[7:].strip() if header[:7].lower() == "bearer " else None
    token = request.query_params.get("access_token")
    if not key and token:
        raise Unauthorized(WRITES_NEED_THE_KEY)
    try:
        appid: str = await run_in_threadpool(state.auth.appid_for_ingest_key, key)
    except InvalidCredential:
        read_token: bool = await run_in_threadpool(_is_read_token, state, key or "")
        if read_token:
            raise Unauthorized(WRITES_NEED_THE_KEY) from None
        raise
    await check_ip(request, appid)
    return appid


def _is_read_token(state: Any, token: str) -> bool:
    """Whether ``token`` is (or was) a token of the read side: an app's or an authorizer's."""
    try:
        state.callers.resolve(token)
    except InvalidCredential:
        return False
    except AuthError:  # expired, or an authorizer's without the permission: still a token
        return True
    return True


async def admit(request: Request) -> Admitted:
    state = request.app.state
    settings = state.settings
    caller = await run_in_threadpool(
        state.callers.resolve, request.query_params.get("access_token")
    )
    appid = caller.appid
    nets, keys = await run_in_threadpool(state.policy.of, appid)
    if caller.component_appid is None:  # a platform's own list is WeChat's to keep
        allowlist.check(client_address(request), nets)
    raw = await read_body(request, settings.max_body_bytes)  # gzip, limits, disconnects
    # Signatures name WeChat's URL, not ours: clients sign the canonical one (§5.4).
    urlpath = settings.wechat_base_url.rstrip("/") + request.url.path
    if keys is None:
        if request.headers.get(SIGNATURE_HEADER) or request.headers.get(APPID_HEADER):
            raise NoSymmetricKey(f"API-security mode is off for {appid}")
    else:
        window = settings.api_security_window_s
        # RSA and AES off the event loop, like every other blocking step.
        opened = await run_in_threadpool(
            open_request, keys, urlpath, request.headers, raw, now=time.time(), window_s=window
        )
        await run_in_threadpool(state.policy.use_nonce, appid, opened.nonce, window)
        raw = json.dumps(opened.params).encode()
    if state.quota.per_day:  # counted in SQLite: off the event loop
        await run_in_threadpool(state.quota.charge, appid)
    else:
        state.quota.charge(appid)
    return Admitted(appid, raw, keys, urlpath)


def _platform_key(request: Request) -> PlatformKey:
    state = request.app.state
    with _key_lock:
        key: PlatformKey | None = getattr(state, "platform_key", None)
        if key is None:
            key = state.platform_key = platform_key(state.settings.data_dir)
    return key


async def respond(request: Request, admitted: Admitted, content: dict[str, Any]) -> Response:
    """``content`` as WeChat JSON, sealed and signed if the request was (§5.3)."""
    if admitted.keys is None:
        return WeChatJSON(content)
    platform = await run_in_threadpool(_platform_key, request)
    headers, body = await run_in_threadpool(
        seal_response, admitted.keys, platform, admitted.urlpath, content, now=time.time()
    )
    response = Response(body, media_type=WECHAT_JSON)
    # Exactly this casing: WxJava looks the headers up in a case-sensitive map (§5.4).
    response.raw_headers.extend((k.encode(), v.encode()) for k, v in headers.items())
    return response
