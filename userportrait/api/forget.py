"""``POST /v1/forget``: a deletion request, every trace of some users of the app removed
(``store/forget.py``; docs/operations.md "Deletion requests")."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.concurrency import run_in_threadpool

from userportrait.api import doors
from userportrait.api.doors import Step, door
from userportrait.api.errors import WeChatJSON
from userportrait.api.events import INGEST_KEY
from userportrait.store.forget import ForgetReport, forget, openids_of

router = APIRouter(prefix="/v1", tags=["ingest"])


@router.post("/forget", summary='Forget users: {"openids": [...]} (at most 10,000)')
@door(Step.WRITE, Step.ALLOW_LIST, Step.BODY)
async def post_forget(
    request: Request,
    authorization: Annotated[str | None, Header(description=INGEST_KEY)] = None,  # doors.writer
) -> WeChatJSON:
    appid = await doors.writer(request)
    state = request.app.state
    openids = openids_of(await doors.json_body(request, state.settings.live_max_body_bytes))
    live = getattr(state, "live", None)
    # Answered once the forget is committed and the state rebuilt without them; the
    # server's write-ahead log is flushed into the lake first (``LiveIngest.forget``).
    report: ForgetReport = await run_in_threadpool(
        live.forget if live is not None else lambda a, o: forget(state.lake, a, o),
        appid,
        openids,
    )
    return WeChatJSON(
        {"errcode": 0, "errmsg": "ok", "users": report.users, "events": report.events}
    )
