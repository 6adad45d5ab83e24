"""``POST /v1/profiles``: user profile attributes, written and committed before the answer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, Security
from fastapi.concurrency import run_in_threadpool

from userportrait.api import doors
from userportrait.api.doors import Step, door
from userportrait.api.errors import WeChatJSON
from userportrait.api.events import INGEST_KEY, answer, records_of
from userportrait.ingest.profiles import submit_profiles

router = APIRouter(prefix="/v1", tags=["ingest"])


@router.post(
    "/profiles",
    summary="Send user profiles (NDJSON or a JSON array, optionally gzip)",
    dependencies=[Security(doors.INGEST_KEY)],
)
@door(Step.WRITE, Step.ALLOW_LIST, Step.BODY)
async def post_profiles(
    request: Request,
    authorization: Annotated[str | None, Header(description=INGEST_KEY)] = None,  # doors.writer
    content_encoding: Annotated[str | None, Header()] = None,  # read by read_body; in OpenAPI
) -> WeChatJSON:
    # Only the parse holds a parse slot: the write may wait for the writer lock (a bulk
    # ingest), which must not keep events from being parsed.
    appid, records = await records_of(request, lambda records, appid: (appid, records))
    # Acknowledged only once written, flushed and committed (profiles need no WAL).
    report = await run_in_threadpool(submit_profiles, request.app.state.lake, records, appid)
    return answer("profiles", report.accepted, report.rejected)
