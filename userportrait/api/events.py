"""``POST /v1/events``: live ingestion through the write-ahead log (docs/ingest.md)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Header, Request, Security
from fastapi.concurrency import run_in_threadpool

from userportrait.api import doors
from userportrait.api.body import read_body
from userportrait.api.doors import Step, door
from userportrait.api.errors import WeChatJSON
from userportrait.errors import Busy, EmptyPostData, InvalidRequest
from userportrait.ingest.live import RejectedRecord
from userportrait.ingest.records import parse_records
from userportrait.metrics import EVENTS_ACCEPTED, EVENTS_REJECTED, reason_label

router = APIRouter(prefix="/v1", tags=["ingest"])
#: Read tokens are refused here (48001): writes take the app's ingest key (docs/api.md).
INGEST_KEY = "Bearer <the app's ingest key> (userportrait apps ingest-key)"
T = TypeVar("T")


@router.post(
    "/events",
    summary="Send visit events (NDJSON or a JSON array, optionally gzip)",
    dependencies=[Security(doors.INGEST_KEY)],
)
@door(Step.WRITE, Step.ALLOW_LIST, Step.BODY)
async def post_events(
    request: Request,
    authorization: Annotated[str | None, Header(description=INGEST_KEY)] = None,  # doors.writer
    content_encoding: Annotated[str | None, Header()] = None,  # read by read_body; in OpenAPI
) -> WeChatJSON:
    # Checked into WAL lines in the parse's thread: the records are dropped before the
    # slot is, and the loop never runs the per-record checks.
    report, done = await records_of(request, request.app.state.live.submit)
    await asyncio.wrap_future(done)  # acknowledged only once fsync'd
    return answer("events", report.accepted, report.rejected)


async def records_of(request: Request, use: Callable[[list[Any], str], T]) -> T:
    """``use(records, appid)`` on the records of the body (events or profiles), for the
    app of the caller's ingest key, within the live limits; an empty body is WeChat's 44002.

    The body is parsed and ``use`` runs in a worker thread, holding one of
    ``live_parses_concurrent`` slots: a slow parse never holds up the event
    loop, and only so many parsed bodies are in memory at once.
    """
    settings = request.app.state.settings
    appid = await doors.writer(request)
    doors.passed(request, Step.BODY)
    body = await read_body(request, settings.live_max_body_bytes)
    async with _parse_slot(request):
        return await run_in_threadpool(_parsed, body, settings.live_max_batch_records, use, appid)


def _parsed(body: bytes, max_records: int, use: Callable[[list[Any], str], T], appid: str) -> T:
    try:
        records = parse_records(body, max_records)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    if not records:
        raise EmptyPostData()
    return use(records, appid)


class ParseSlots:
    """At most ``concurrent`` bodies parsed at once and ``queue`` waiting; beyond, Busy (503)."""

    def __init__(self, concurrent: int, queue: int) -> None:
        self.queue = queue
        self._slots = asyncio.Semaphore(concurrent)
        self._waiting = 0

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        if self._slots.locked():
            if self._waiting >= self.queue:
                raise Busy("too many request bodies being parsed at once")
            self._waiting += 1
            try:
                await self._slots.acquire()
            finally:
                self._waiting -= 1
        else:
            await self._slots.acquire()
        try:
            yield
        finally:
            self._slots.release()


def _parse_slot(request: Request) -> Any:
    # One ParseSlots per app, made on first use on the app's loop (no await in between).
    state = request.app.state
    slots: ParseSlots | None = getattr(state, "parse_slots", None)
    if slots is None:
        settings = state.settings
        slots = state.parse_slots = ParseSlots(
            settings.live_parses_concurrent, settings.live_parses_queue
        )
    return slots.hold()


def answer(kind: str, accepted: int, rejected: Sequence[RejectedRecord]) -> WeChatJSON:
    """The answer of an ingest route: counts and the rejected records' reasons (and the
    same counts in the metrics, ``kind`` events or profiles)."""
    EVENTS_ACCEPTED.labels(kind).inc(accepted)
    for r in rejected:
        EVENTS_REJECTED.labels(kind, reason_label(r.reason)).inc()
    return WeChatJSON({
        "errcode": 0, "errmsg": "ok", "accepted": accepted,
        "rejected": [{"index": r.index, "reason": r.reason} for r in rejected],
    })  # fmt: skip
