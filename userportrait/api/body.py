"""Request bodies, read as they stream in: a size limit per route, gzip, a client that leaves.

``BodyLimit`` (ASGI middleware) counts the bytes of every request body as the route
receives them and raises PayloadTooLarge (HTTP 413) the moment a route's limit is passed,
or before the first byte when ``Content-Length`` says so: no route buffers more than its
limit, whichever way it reads the body. ``read_body`` is how routes read one: it decodes
``Content-Encoding: gzip`` member by member (as the ``gzip`` tools do), stops decoding at
the limit, refuses bytes after the last member, and turns a client that closed the
connection into ClientDisconnected (an INFO line, not a traceback).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping

from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from userportrait.errors import ClientDisconnected, InvalidRequest, PayloadTooLarge

_GZIP_MAGIC = b"\x1f\x8b"


class BodyLimit:
    def __init__(self, app: ASGIApp, default: int, per_path: Mapping[str, int]) -> None:
        self.app = app
        self.default = default
        self.per_path = dict(per_path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.per_path.get(scope["path"], self.default)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        received = 0

        async def limited() -> Message:
            nonlocal received
            if declared.isdigit() and int(declared) > limit:
                raise _too_large(limit)
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise _too_large(limit)
            return message

        await self.app(scope, limited, send)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"body is larger than {limit} bytes")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, decoded; at most ``limit`` bytes after decoding."""
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding not in ("", "identity", "gzip"):
        raise InvalidRequest(f"unsupported Content-Encoding {encoding}")
    gunzip = Gunzip(limit) if encoding == "gzip" else None
    parts: list[bytes] = []
    try:
        async for chunk in request.stream():
            parts.append(gunzip.feed(chunk) if gunzip else chunk)
    except ClientDisconnect:
        raise ClientDisconnected() from None
    if gunzip:
        gunzip.finish()
    return b"".join(parts)


class Gunzip:
    """Incremental gzip decoding of every member, refusing output beyond ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.members = 1
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._fed = False  # bytes of the current member seen

    def feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        while data:
            if self._inflater.eof:  # the member ended: what follows must be another one
                if data[: len(_GZIP_MAGIC)] != _GZIP_MAGIC[: len(data)]:
                    raise InvalidRequest(
                        f"body is not valid gzip (data after member {self.members} "
                        "is not a gzip member)"
                    )
                self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
                self.members += 1
            self._fed = True
            try:
                piece = self._inflater.decompress(data, self.limit + 1 - self.size)
            except zlib.error:
                raise InvalidRequest("body is not valid gzip") from None
            self.size += len(piece)
            if self.size > self.limit:
                raise PayloadTooLarge(f"body is larger than {self.limit} bytes after gzip decoding")
            out.append(piece)
            data = (
                self._inflater.unused_data if self._inflater.eof else self._inflater.unconsumed_tail
            )
        return b"".join(out)

    def finish(self) -> None:
        if not self._fed or not self._inflater.eof:
            raise InvalidRequest("body is not valid gzip (truncated)")
