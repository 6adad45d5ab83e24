"""``POST /v1/events``: live ingestion through the write-ahead log (docs/ingest.md)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request

from userportrait.api import doors
from userportrait.api.body import read_body
from userportrait.api.doors import Step, door
from userportrait.api.errors import WeChatJSON
from userportrait.errors import EmptyPostData, InvalidRequest
from userportrait.ingest.live import RejectedRecord
from userportrait.ingest.records import parse_records

router = APIRouter(prefix="/v1", tags=["ingest"])
#: Read tokens are refused here (48001): writes take the app's ingest key (issue 24).
INGEST_KEY = "Bearer <the app's ingest key> (userportrait apps ingest-key)"


@router.post("/events", summary="Send visit events (NDJSON or a JSON array, optionally gzip)")
@door(Step.WRITE, Step.ALLOW_LIST, Step.BODY)
async def post_events(
    request: Request,
    authorization: Annotated[str | None, Header(description=INGEST_KEY)] = None,  # doors.writer
    content_encoding: Annotated[str | None, Header()] = None,  # read by read_body; in OpenAPI
) -> WeChatJSON:
    appid, records = await records_of(request)
    report, done = request.app.state.live.submit(records, appid)
    await asyncio.wrap_future(done)  # acknowledged only once fsync'd
    return answer(report.accepted, report.rejected)


async def records_of(request: Request) -> tuple[str, list[Any]]:
    """The appid of the caller's ingest key and the records of the body (events or
    profiles), within the live limits; an empty body is WeChat's 44002."""
    settings = request.app.state.settings
    appid = await doors.writer(request)
    doors.passed(request, Step.BODY)
    body = await read_body(request, settings.live_max_body_bytes)
    try:
        records = parse_records(body, settings.live_max_batch_records)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    if not records:
        raise EmptyPostData()
    return appid, records


def answer(accepted: int, rejected: Sequence[RejectedRecord]) -> WeChatJSON:
    """The answer of an ingest route: counts and the rejected records' reasons."""
    return WeChatJSON({
        "errcode": 0, "errmsg": "ok", "accepted": accepted,
        "rejected": [{"index": r.index, "reason": r.reason} for r in rejected],
    })  # fmt: skip
