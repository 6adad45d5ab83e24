"""The one place errors become WeChat error bodies (SPEC §4, wechat-protocol §4.1-4.3)."""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from userportrait.errors import InvalidRequest, RequirePost, ServiceError

log = logging.getLogger("userportrait.api")
WECHAT_JSON = "application/json; encoding=utf-8"


class WeChatJSON(JSONResponse):
    """JSON as WeChat sends it: UTF-8 unescaped, ``application/json; encoding=utf-8``."""

    media_type = WECHAT_JSON

    def render(self, content: Any) -> bytes:
        import json

        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()


def new_rid() -> str:
    """``xxxxxxxx-xxxxxxxx-xxxxxxxx``; the first group is the Unix time in hex, as WeChat's."""
    return f"{int(time.time()):08x}-{secrets.token_hex(4)}-{secrets.token_hex(4)}"


def rid_of(request: Request) -> str:
    rid = getattr(request.state, "rid", None)
    if rid is None:
        rid = request.state.rid = new_rid()
    return str(rid)


def error_body(exc: ServiceError, rid: str) -> dict[str, Any]:
    return {"errcode": exc.errcode, "errmsg": f"{exc.message} rid: {rid}"}


def error_response(exc: ServiceError, request: Request) -> WeChatJSON:
    rid = rid_of(request)
    headers = {"X-Request-Id": rid}
    if exc.http_status == 503:
        headers["Retry-After"] = "1"
    return WeChatJSON(error_body(exc, rid), status_code=exc.http_status, headers=headers)


async def _service_error(request: Request, exc: Exception) -> WeChatJSON:
    assert isinstance(exc, ServiceError)
    log.info("rid=%s errcode=%s %s", rid_of(request), exc.errcode, exc.message)
    return error_response(exc, request)


async def _validation_error(request: Request, exc: Exception) -> WeChatJSON:
    return error_response(InvalidRequest(str(exc)[:200]), request)


async def _http_error(request: Request, exc: Exception) -> WeChatJSON:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return error_response(RequirePost(), request)
    err = ServiceError(f"{exc.status_code} {exc.detail}")
    response = error_response(err, request)
    response.status_code = exc.status_code
    return response


async def _unexpected(request: Request, exc: Exception) -> WeChatJSON:
    log.exception("rid=%s unexpected error", rid_of(request))
    return error_response(ServiceError(), request)


def install(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
