"""The datacube's answers in API-security mode: ``respond`` seals and signs the answer when
the request was sealed (its door, ``api/doors.datacube``, opened it). Errors are always
plaintext, as WeChat's are (WxJava reads the raw body for ``errcode`` before it decrypts;
docs/api.md "API-security mode").
"""

from __future__ import annotations

import threading
import time
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import Response

from userportrait.api.doors import Admitted
from userportrait.api.errors import WECHAT_JSON, WeChatJSON
from userportrait.auth.security import PlatformKey, platform_key, seal_response

_key_lock = threading.Lock()


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
