"""The one place errors become WeChat error bodies (docs/api.md "Errors").

``handle`` is the only exception handler; it is registered for ``ServiceError``,
FastAPI's validation error, Starlette's ``HTTPException`` and ``Exception`` (Starlette looks
handlers up along the exception's MRO). Routes under ``/wxa/cloud/<api>`` get the
cloud-call form ``{"errCode", "errMsg": "openapi.<api>:fail <msg> rid: …"}``.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from userportrait.errors import (
    ClientDisconnected,
    InvalidRequest,
    RequireGet,
    RequirePost,
    ServiceError,
)

log = logging.getLogger("userportrait.api")
WECHAT_JSON: Final = "application/json; encoding=utf-8"
CLOUD_PREFIX: Final = "/wxa/cloud/"
#: Set in the request's state once an error is answered, to its errcode (api/doors.Enforce
#: and the request metrics read it).
ERROR_ANSWERED: Final = "error_answered"


class WeChatJSON(JSONResponse):
    """JSON as WeChat sends it: UTF-8 unescaped, ``application/json; encoding=utf-8``."""

    media_type = WECHAT_JSON

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()


def new_rid() -> str:
    """``xxxxxxxx-xxxxxxxx-xxxxxxxx``; the first group is the Unix time in hex, as WeChat's."""
    return f"{int(time.time()):08x}-{secrets.token_hex(4)}-{secrets.token_hex(4)}"


def rid_of(request: Request) -> str:
    rid = getattr(request.state, "rid", None)
    if rid is None:
        rid = request.state.rid = new_rid()
    return str(rid)


def cloud_api(path: str) -> str | None:
    """``analysis.getUserPortrait`` for ``/wxa/cloud/analysis.getUserPortrait``, else None."""
    if path.startswith(CLOUD_PREFIX) and len(path) > len(CLOUD_PREFIX):
        return path[len(CLOUD_PREFIX) :]
    return None


def error_body(exc: ServiceError, rid: str, path: str = "/") -> dict[str, Any]:
    errmsg = f"{exc.message} rid: {rid}"
    api = cloud_api(path)
    if api is not None:
        return {"errCode": exc.errcode, "errMsg": f"openapi.{api}:fail {errmsg}"}
    return {"errcode": exc.errcode, "errmsg": errmsg}


def _translate(request: Request, exc: Exception) -> tuple[ServiceError, int | None]:
    """The ServiceError to render for ``exc``, and an HTTP status overriding its own."""
    if isinstance(exc, HTTPException) and isinstance(
        exc.__cause__, ServiceError | ClientDisconnect
    ):
        exc = exc.__cause__  # FastAPI wraps what reading a body model raised in a 400
    if isinstance(exc, ServiceError):
        return exc, None
    if isinstance(exc, ClientDisconnect):  # a route that read the body without read_body
        return ClientDisconnected(), None
    if isinstance(exc, RequestValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: {e.get('msg', '')}"
            for e in exc.errors()
        )
        return InvalidRequest(problems[:200]), None
    if isinstance(exc, HTTPException):
        if exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "")
            return (RequirePost() if "POST" in allowed else RequireGet()), None
        if exc.status_code == 404:
            return ServiceError(f"no such API: {request.method} {request.url.path}"), 404
        return ServiceError(f"{exc.status_code} {exc.detail}"), exc.status_code
    rid = rid_of(request)
    log.error("rid=%s unexpected error", rid, exc_info=exc, extra={"rid": rid})
    return ServiceError(), None


async def handle(request: Request, exc: Exception) -> WeChatJSON:
    """The one exception handler: any exception -> WeChat (or cloud-call) error body."""
    err, status = _translate(request, exc)
    request.scope.setdefault("state", {})[ERROR_ANSWERED] = err.errcode
    rid = rid_of(request)
    if isinstance(exc, ServiceError | ClientDisconnect) or isinstance(
        exc.__cause__, ServiceError | ClientDisconnect
    ):
        log.info("rid=%s errcode=%s %s", rid, err.errcode, err.message, extra={"rid": rid})
    headers = {"X-Request-Id": rid}
    if err.http_status == 503:
        headers["Retry-After"] = "1"
    return WeChatJSON(
        error_body(err, rid, request.url.path),
        status_code=status or err.http_status,
        headers=headers,
    )


def install(app: FastAPI) -> None:
    for key in (ServiceError, RequestValidationError, HTTPException, Exception):
        app.add_exception_handler(key, handle)
