"""``POST /v1/events``: live ingestion through the write-ahead log (docs/ingest.md)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request

from userportrait.api.body import read_body
from userportrait.api.errors import WeChatJSON
from userportrait.api.native import app_of_token
from userportrait.errors import EmptyPostData, InvalidRequest
from userportrait.ingest.records import parse_records

router = APIRouter(prefix="/v1", tags=["ingest"])


@router.post("/events", summary="Send visit events (NDJSON or a JSON array, optionally gzip)")
async def post_events(
    request: Request,
    access_token: Annotated[str | None, Query(description="The app's access_token")] = None,
    authorization: Annotated[str | None, Header()] = None,
    content_encoding: Annotated[str | None, Header()] = None,  # read by read_body; in OpenAPI
) -> WeChatJSON:
    state = request.app.state
    settings = state.settings
    appid = await app_of_token(request, access_token, authorization)
    body = await read_body(request, settings.live_max_body_bytes)
    try:
        records = parse_records(body, settings.live_max_batch_records)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    if not records:
        raise EmptyPostData()
    report, done = state.live.submit(records, appid)
    await asyncio.wrap_future(done)  # acknowledged only once fsync'd
    return WeChatJSON({
        "errcode": 0, "errmsg": "ok", "accepted": report.accepted,
        "rejected": [{"index": r.index, "reason": r.reason} for r in report.rejected],
    })  # fmt: skip
