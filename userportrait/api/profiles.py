"""``POST /v1/profiles``: user profile attributes, written and committed before the answer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool

from userportrait.api.body import read_body
from userportrait.api.errors import WeChatJSON
from userportrait.api.native import app_of_token
from userportrait.errors import EmptyPostData, InvalidRequest
from userportrait.ingest.profiles import submit_profiles
from userportrait.ingest.records import parse_records

router = APIRouter(prefix="/v1", tags=["ingest"])


@router.post("/profiles", summary="Send user profiles (NDJSON or a JSON array, optionally gzip)")
async def post_profiles(
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
    # Acknowledged only once written, flushed and committed (profiles need no WAL).
    report = await run_in_threadpool(submit_profiles, state.lake, records, appid)
    return WeChatJSON({
        "errcode": 0, "errmsg": "ok", "accepted": report.accepted,
        "rejected": [{"index": r.index, "reason": r.reason} for r in report.rejected],
    })  # fmt: skip
