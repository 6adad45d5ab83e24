"""Request context as a pure ASGI middleware: rid, ``X-Request-Id``, one JSON access-log line.

The line carries the query string with the values of credential parameters (access_token,
secret, …) replaced by ``***``, so the log never holds a usable credential.

An exception no handler took (it escaped FastAPI's exception middleware) is rendered here
by ``errors.handle`` as ``-1 system error``, so the traceback is logged once, with its rid,
and never reaches the client or the server's own error log.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Final
from urllib.parse import unquote_plus

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from userportrait.api.errors import ERROR_ANSWERED, handle, new_rid
from userportrait.metrics import REQUEST_SECONDS, REQUESTS

access_log = logging.getLogger("userportrait.access")
#: Query parameters whose values never reach the log.
SECRET_PARAMS: Final = frozenset({
    "access_token", "secret", "component_access_token", "authorizer_access_token",
    "component_appsecret", "authorization_code", "code", "ticket",
})  # fmt: skip


def redact(query: str) -> str:
    """``a=1&access_token=T`` -> ``a=1&access_token=***``, however the name is encoded."""
    parts = []
    for part in query.split("&"):
        name, eq, _ = part.partition("=")
        if eq and unquote_plus(name).strip().lower() in SECRET_PARAMS:
            part = f"{name}{eq}***"
        parts.append(part)
    return "&".join(parts)


class RequestContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        rid = new_rid()
        scope.setdefault("state", {})["rid"] = rid
        status = 0

        async def send_with_rid(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                if not any(k.lower() == b"x-request-id" for k, _ in headers):
                    headers.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_rid)
        except Exception as exc:
            if status:  # the response had started; nothing more can be sent
                raise
            response = await handle(Request(scope), exc)
            await response(scope, receive, send_with_rid)
        finally:
            elapsed = time.perf_counter() - start
            # The route's template, not the path: /v1/apps/{appid}/portrait is one series.
            route = str(getattr(scope.get("route"), "path", "") or "unmatched")
            errcode = scope.get("state", {}).get(ERROR_ANSWERED, 0)
            REQUESTS.labels(route, scope["method"], str(errcode)).inc()
            REQUEST_SECONDS.labels(route).observe(elapsed)
            fields = {
                "rid": rid,
                "method": scope["method"],
                "path": scope["path"],
                "query": redact(scope.get("query_string", b"").decode("latin-1")),
                "status": status,
                "ms": round(elapsed * 1000, 2),
            }
            # Text logs print the JSON; JSON logs put the fields in the line's object (logs.py).
            summary = f"{scope['method']} {scope['path']} {status}"
            access_log.info(json.dumps(fields), extra={"fields": fields, "summary": summary})
