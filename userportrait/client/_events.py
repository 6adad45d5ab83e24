"""Sending events, without I/O: events made ready, batches, bodies, what an answer means.

``Client.send_events`` and ``AsyncClient.send_events`` (``_client.py``) run the same loop
over these; only their waiting and their HTTP calls differ.

* An event gets ``appid`` (the client's) and ``event_id`` (uuid4 hex) when it has none, once,
  before its first attempt: every retry resends the same ids, and the server keeps one
  event per (appid, day, event_id), so a batch sent twice counts once.
* A ``datetime`` ``ts`` becomes RFC 3339 with its offset; a naive one is refused (the server
  would read it as Asia/Shanghai wall time, rarely what ``datetime.now()`` meant).
* Other fields pass through as they are (``ip``, ``model``, ``user_agent``, …): the server
  checks them; here they need only be JSON.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import random
import uuid
from collections import deque
from collections.abc import Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import httpx

from userportrait.client._exceptions import TransportError, error_from_body
from userportrait.client._models import EventsNotSent, Rejected, Retry, SendSummary

EVENTS_PATH: Final = "/v1/events"
#: The server's defaults (USERPORTRAIT_LIVE_MAX_BATCH_RECORDS, _LIVE_MAX_BODY_BYTES).
MAX_BATCH_RECORDS: Final = 10_000
MAX_BATCH_BYTES: Final = 16 * 1024 * 1024
#: Network failures after which the request may or may not have reached the server.
RETRYABLE_ERRORS: Final = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
_RETRY_STATUS: Final = frozenset({408, 429})


@dataclass(frozen=True, slots=True)
class Ready:
    """An event as it will be sent: its dict (returned to the caller on failure), its line."""

    event: dict[str, Any]
    line: bytes


def ready(event: Mapping[str, Any], appid: str, now: dt.datetime | None = None) -> Ready:
    """The event with appid and event_id filled in and ``ts`` serialised (``now`` if given
    and the event has none); TypeError/ValueError if it cannot be sent as JSON."""
    if not isinstance(event, Mapping):
        raise TypeError(f"an event is a mapping, not {type(event).__name__}")
    out = dict(event)
    if out.get("appid") is None:
        out["appid"] = appid
    if out.get("event_id") is None:
        out["event_id"] = uuid.uuid4().hex
    if out.get("ts") is None and now is not None:
        out["ts"] = now
    ts = out.get("ts")
    if isinstance(ts, dt.datetime):
        if ts.utcoffset() is None:
            raise ValueError("ts is a naive datetime: give it a tzinfo (datetime.now(UTC))")
        out["ts"] = ts.isoformat()
    line = json.dumps(out, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return Ready(out, line.encode() + b"\n")


def batches(
    items: Iterable[tuple[int, Ready]], max_records: int, max_bytes: int
) -> Iterator[list[tuple[int, Ready]]]:
    """Consecutive batches of at most ``max_records`` events and ``max_bytes`` of NDJSON."""
    batch: list[tuple[int, Ready]] = []
    size = 0
    for item in items:
        n = len(item[1].line)
        if batch and (len(batch) >= max_records or size + n > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += n
    if batch:
        yield batch


def body(batch: list[tuple[int, Ready]], compress: bool) -> tuple[bytes, dict[str, str]]:
    data = b"".join(r.line for _, r in batch)
    headers = {"Content-Type": "application/x-ndjson"}
    if compress:
        headers["Content-Encoding"] = "gzip"
        data = gzip.compress(data, compresslevel=6, mtime=0)
    return data, headers


def duplicates(items: list[tuple[int, Ready]]) -> int:
    """Events whose (event_id, ts) an earlier one had: the server keeps one of each."""
    keys = {(str(r.event["event_id"]), str(r.event.get("ts"))) for _, r in items}
    return len(items) - len(keys)


Outcome = Literal["done", "retry", "split", "fail"]


@dataclass(frozen=True, slots=True)
class Answer:
    """What one attempt's answer means for its batch."""

    outcome: Outcome
    summary: SendSummary | None = None
    error: Exception | None = None
    retry_after: float | None = None


def judge(res: httpx.Response, batch: list[tuple[int, Ready]]) -> Answer:
    """done (with the counts), retry (429, 408, 5xx, errcode -1), split (413) or fail."""
    try:
        payload: Any = res.json()
    except ValueError:
        payload = None
    if res.status_code == 413:
        return Answer("split", error=_error(res, payload))
    if res.status_code in _RETRY_STATUS or res.status_code >= 500:
        return Answer("retry", error=_error(res, payload), retry_after=retry_after(res))
    if not isinstance(payload, dict) or res.status_code >= 400:
        return Answer("fail", error=_error(res, payload))
    if payload.get("errcode", 0) != 0:
        # -1 is "system error": the server failed before acknowledging; resending is safe
        outcome: Outcome = "retry" if payload.get("errcode") == -1 else "fail"
        return Answer(outcome, error=error_from_body(payload))
    summary = SendSummary(accepted=int(payload.get("accepted", 0)))
    for r in payload.get("rejected", []):
        index, event = batch[int(r["index"])][0], batch[int(r["index"])][1].event
        summary.rejected.append(Rejected(index, str(r["reason"]), event))
    return Answer("done", summary)


def _error(res: httpx.Response, payload: Any) -> Exception:
    if isinstance(payload, dict) and payload.get("errcode", 0) not in (0, None):
        return error_from_body(payload)
    return TransportError(f"HTTP {res.status_code}")


def retry_after(res: httpx.Response) -> float | None:
    value = res.headers.get("retry-after", "").strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare from a server like this one; back off instead


def wait_s(policy: Retry, attempt: int, retry_after: float | None) -> float:
    """How long to wait before retry number ``attempt`` (0-based)."""
    backoff = random.uniform(0, min(policy.max_backoff_s, policy.backoff_s * 2**attempt))
    if retry_after is None:
        return backoff
    return max(min(retry_after, policy.max_retry_after_s), backoff)


def rejected_too_large(batch: list[tuple[int, Ready]], error: Exception) -> SendSummary:
    """A single event the server refuses as too large: rejected, not retried."""
    (index, r), = batch  # fmt: skip
    return SendSummary(rejected=[Rejected(index, str(error), r.event)])


@dataclass(frozen=True, slots=True)
class Post:
    """Step: POST this body to /v1/events; send back the response or the exception."""

    content: bytes
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class Sleep:
    """Step: wait this long, then send back None."""

    seconds: float


Steps = Generator[Post | Sleep, httpx.Response | Exception | None, SendSummary]


def send_plan(
    items: list[tuple[int, Ready]], policy: Retry, max_records: int, max_bytes: int,
    compress: bool,
) -> Steps:  # fmt: skip
    """The whole send as steps for a driver (sync or async) to carry out.

    Batches go one after another. A batch answered 413 is split in two (a server set up
    with lower limits than ours); one retried exhausts ``policy.attempts`` or fails for
    good -> EventsNotSent naming every event not acknowledged, this batch's and the rest.
    """
    summary = SendSummary(duplicates=duplicates(items))
    queue = deque(batches(items, max_records, max_bytes))
    while queue:
        batch = queue.popleft()
        content, headers = body(batch, compress)
        for attempt in range(policy.attempts):
            summary.requests += 1
            summary.resent += len(batch) if attempt else 0
            got = yield Post(content, headers)
            answer = judge(got, batch) if isinstance(got, httpx.Response) else _failed(got)
            if answer.outcome == "done":
                assert answer.summary is not None
                summary.add(answer.summary)
                break
            if answer.outcome == "split" and len(batch) == 1:
                summary.add(rejected_too_large(batch, answer.error or TransportError()))
                break
            if answer.outcome == "split":
                half = len(batch) // 2
                queue.extendleft([batch[half:], batch[:half]])
                break
            if answer.outcome == "fail" or attempt == policy.attempts - 1:
                unsent = [r.event for b in (batch, *queue) for _, r in b]
                raise EventsNotSent(answer.error or TransportError(), summary, unsent)
            yield Sleep(wait_s(policy, attempt, answer.retry_after))
    return summary


def _failed(exc: Exception | None) -> Answer:
    """An attempt that raised: network errors and transport failures are retried."""
    if isinstance(exc, (*RETRYABLE_ERRORS, TransportError)):
        return Answer("retry", error=exc)
    return Answer("fail", error=exc)
