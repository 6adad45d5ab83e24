"""``POST /v1/events``: live ingestion through the write-ahead log (docs/ingest.md)."""

from __future__ import annotations

import asyncio
import zlib
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request

from userportrait.api.errors import WeChatJSON
from userportrait.api.native import app_of_token
from userportrait.errors import InvalidRequest, PayloadTooLarge
from userportrait.ingest.records import parse_records

router = APIRouter(prefix="/v1", tags=["ingest"])


def _decode(raw: bytes, encoding: str | None, limit: int) -> bytes:
    if encoding and encoding.lower() == "gzip":
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out = inflater.decompress(raw, limit + 1)
        except zlib.error:
            raise InvalidRequest("body is not valid gzip") from None
        if not inflater.eof and len(out) <= limit:
            raise InvalidRequest("body is not valid gzip (truncated)")
        raw = out
    elif encoding and encoding.lower() not in ("identity", ""):
        raise InvalidRequest(f"unsupported Content-Encoding {encoding}")
    if len(raw) > limit:
        raise PayloadTooLarge(f"body is larger than {limit} bytes")
    return raw


def _records(body: bytes) -> list[Any]:
    try:
        return parse_records(body)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None


@router.post("/events", summary="Send visit events (NDJSON or a JSON array, optionally gzip)")
async def post_events(
    request: Request,
    access_token: Annotated[str | None, Query(description="The app's access_token")] = None,
    authorization: Annotated[str | None, Header()] = None,
    content_encoding: Annotated[str | None, Header()] = None,
) -> WeChatJSON:
    state = request.app.state
    settings = state.settings
    appid = await app_of_token(request, access_token, authorization)
    raw = await request.body()
    if len(raw) > settings.live_max_body_bytes:
        raise PayloadTooLarge(f"body is larger than {settings.live_max_body_bytes} bytes")
    records = _records(_decode(raw, content_encoding, settings.live_max_body_bytes))
    if not records:
        from userportrait.errors import EmptyPostData

        raise EmptyPostData()
    if len(records) > settings.live_max_batch_records:
        raise PayloadTooLarge(
            f"{len(records)} records; at most {settings.live_max_batch_records} per request"
        )
    report, done = state.live.submit(records, appid)
    await asyncio.wrap_future(done)  # acknowledged only once fsync'd
    return WeChatJSON({
        "errcode": 0, "errmsg": "ok", "accepted": report.accepted,
        "rejected": [{"index": r.index, "reason": r.reason} for r in report.rejected],
    })  # fmt: skip
