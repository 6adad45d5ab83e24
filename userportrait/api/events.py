"""``POST /v1/events``: live ingestion through the write-ahead log (docs/ingest.md)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool

from userportrait.api import doors
from userportrait.api.body import read_body
from userportrait.api.doors import Step, door
from userportrait.api.errors import WeChatJSON
from userportrait.api.native import bearer
from userportrait.errors import EmptyPostData, InvalidRequest
from userportrait.ingest.live import RejectedRecord
from userportrait.ingest.records import parse_records

router = APIRouter(prefix="/v1", tags=["ingest"])


@router.post("/events", summary="Send visit events (NDJSON or a JSON array, optionally gzip)")
@door(Step.WRITE, Step.ALLOW_LIST, Step.BODY)
async def post_events(
    request: Request,
    access_token: Annotated[str | None, Query(description="The app's access_token")] = None,
    authorization: Annotated[str | None, Header()] = None,
    content_encoding: Annotated[str | None, Header()] = None,  # read by read_body; in OpenAPI
) -> WeChatJSON:
    appid, records = await records_of(request, access_token, authorization)
    report, done = request.app.state.live.submit(records, appid)
    await asyncio.wrap_future(done)  # acknowledged only once fsync'd
    return answer(report.accepted, report.rejected)


async def records_of(
    request: Request, access_token: str | None, authorization: str | None
) -> tuple[str, list[Any]]:
    """The caller's appid and the records of the body (events or profiles), within the
    live limits; an empty body is WeChat's 44002."""
    settings = request.app.state.settings
    doors.passed(request, Step.WRITE)
    token = bearer(access_token, authorization)
    appid: str = await run_in_threadpool(request.app.state.auth.appid_for, token)
    await doors.allow_list(request, appid)
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
