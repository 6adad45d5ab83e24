"""Buffered senders for web backends: ``EventBuffer`` (a thread) and ``AsyncEventBuffer``.

A request handler calls ``add(event)`` and returns; the buffer sends what it holds when
``max_events`` are waiting or ``max_interval_s`` after the oldest waiting event arrived,
and on ``close()`` (or leaving the ``with`` block, or interpreter exit). Sends go through
``send_events``, so they are batched, gzipped and retried with the same event ids, with
the client's ingest key (a client without one is refused when the buffer is made).

Nothing is lost silently. A send that still fails after its retries is logged and its
events (with their event ids: sending them again later counts each once) go to
``on_error``. Memory is bounded by ``max_buffer`` events; past it ``when_full`` decides:
``"drop_oldest"`` (the default: a web request never waits on the portrait server; the
dropped events are counted in ``dropped``, logged, and handed to ``on_error``) or
``"block"`` (``add`` waits for room: nothing dropped, but requests slow down while the
server is unreachable).
"""

from __future__ import annotations

import asyncio
import atexit
import datetime as dt
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from userportrait.client._client import AsyncClient, Client
from userportrait.client._events import MAX_BATCH_RECORDS, Ready, ready
from userportrait.client._models import EventsNotSent, SendSummary

log = logging.getLogger("userportrait.client")

WhenFull = Literal["drop_oldest", "block"]
OnError = Callable[[list[dict[str, Any]], BaseException], None]


@dataclass(slots=True)
class BufferStats:
    """Totals since the buffer was made."""

    added: int = 0
    accepted: int = 0
    rejected: int = 0
    dropped: int = 0  # pushed out by ``drop_oldest`` (handed to on_error)
    failed: int = 0  # in sends that failed after their retries (handed to on_error)
    sends: int = 0


class _Core:
    """The queue and the bookkeeping both buffers share; the caller holds the lock."""

    def __init__(
        self, appid: str, max_events: int, max_interval_s: float, max_buffer: int,
        when_full: WhenFull, on_error: OnError | None,
    ) -> None:  # fmt: skip
        if not 0 < max_events <= max_buffer:
            raise ValueError("need 0 < max_events <= max_buffer")
        self.appid = appid
        self.max_events = max_events
        self.max_interval_s = max_interval_s
        self.max_buffer = max_buffer
        self.when_full = when_full
        self.on_error = on_error
        self.queue: deque[Ready] = deque()
        self.oldest_at: float | None = None  # monotonic time the oldest waiting event came
        self.stats = BufferStats()
        self.closed = False

    def prepare(self, event: Mapping[str, Any]) -> Ready:
        # the time of add() is the visit's time when the event has none
        return ready(event, self.appid, now=dt.datetime.now(dt.UTC))

    def push(self, item: Ready) -> list[dict[str, Any]]:
        """Queue ``item``; the events pushed out to make room (drop_oldest)."""
        dropped = []
        while len(self.queue) >= self.max_buffer:
            dropped.append(self.queue.popleft().event)
        self.queue.append(item)
        if self.oldest_at is None or dropped:
            self.oldest_at = time.monotonic()
        self.stats.added += 1
        self.stats.dropped += len(dropped)
        return dropped

    def full(self) -> bool:
        return len(self.queue) >= self.max_buffer

    def due(self) -> bool:
        return len(self.queue) >= self.max_events or (
            self.oldest_at is not None and time.monotonic() >= self.oldest_at + self.max_interval_s
        )

    def timeout(self) -> float | None:
        """Seconds until the oldest waiting event is due; None when nothing waits."""
        if self.oldest_at is None:
            return None
        return max(0.0, self.oldest_at + self.max_interval_s - time.monotonic())

    def take(self) -> list[tuple[int, Ready]]:
        items = list(enumerate(self.queue))
        self.queue.clear()
        self.oldest_at = None
        return items

    def sent(self, summary: SendSummary) -> None:
        self.stats.sends += 1
        self.stats.accepted += summary.accepted
        self.stats.rejected += len(summary.rejected)
        if summary.rejected:
            first = summary.rejected[0]
            log.warning("userportrait refused %d event(s); first: %s (%r)",
                        len(summary.rejected), first.reason, first.event)  # fmt: skip

    def failed(self, events: list[dict[str, Any]], exc: BaseException, why: str) -> None:
        if why == "dropped":
            log.error("event buffer full: %d oldest event(s) dropped", len(events))
        else:
            self.stats.failed += len(events)
            log.error("sending %d event(s) to userportrait failed: %s", len(events), exc)
        if self.on_error is not None:
            try:
                self.on_error(events, exc)
            except Exception:
                log.exception("on_error raised")


class BufferFull(Exception):
    """Given to ``on_error`` with the events ``drop_oldest`` pushed out."""


class EventBuffer:
    """Thread-safe buffered sender over a ``Client`` (which it does not close)."""

    def __init__(
        self,
        client: Client,
        *,
        max_events: int = 1000,
        max_interval_s: float = 5.0,
        max_buffer: int = 50_000,
        when_full: WhenFull = "drop_oldest",
        on_error: OnError | None = None,
        batch_size: int = MAX_BATCH_RECORDS,
    ) -> None:
        client._session.check_ingest_key()  # refused now, not at the first send
        self._client = client
        self._core = _Core(client.appid, max_events, max_interval_s, max_buffer, when_full,
                           on_error)  # fmt: skip
        self._batch_size = batch_size
        self._cond = threading.Condition()
        self._send_lock = threading.Lock()  # one send at a time: flush() vs the thread
        self._thread = threading.Thread(target=self._run, name="userportrait-events", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    @property
    def stats(self) -> BufferStats:
        return self._core.stats

    def __len__(self) -> int:
        return len(self._core.queue)

    def __enter__(self) -> EventBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, event: Mapping[str, Any]) -> None:
        """Queue one event (TypeError/ValueError at once if it cannot be sent as JSON)."""
        item = self._core.prepare(event)
        with self._cond:
            while self._core.when_full == "block" and self._core.full() and not self._core.closed:
                self._cond.wait()
            if self._core.closed:
                raise RuntimeError("the event buffer is closed")
            dropped = self._core.push(item)
            if len(self._core.queue) == 1 or self._core.due():  # a new deadline, or due now
                self._cond.notify_all()
        if dropped:
            self._core.failed(dropped, BufferFull(f"{len(dropped)} dropped"), "dropped")

    def flush(self) -> None:
        """Send everything queued now; returns when done (or handed to on_error)."""
        with self._send_lock:
            with self._cond:
                items = self._core.take()
                self._cond.notify_all()  # room for blocked add()s
            if not items:
                return
            try:
                summary = self._client._send_ready(items, self._batch_size)
            except EventsNotSent as exc:
                self._core.sent(exc.summary)
                self._core.failed(exc.unsent, exc, "failed")
            except Exception as exc:  # never let the thread die with events in hand
                self._core.failed([r.event for _, r in items], exc, "failed")
            else:
                self._core.sent(summary)

    def close(self) -> None:
        """Stop the thread and send what is left (idempotent; also run at exit)."""
        with self._cond:
            if self._core.closed:
                return
            self._core.closed = True
            self._cond.notify_all()
        self._thread.join()
        self.flush()
        atexit.unregister(self.close)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._core.closed and not self._core.due():
                    self._cond.wait(self._core.timeout())
                if self._core.closed:
                    return
            self.flush()


class AsyncEventBuffer:
    """The asyncio twin over an ``AsyncClient``: call ``add`` from the event loop's thread.

    Start it with ``async with`` (or ``await start()``) inside the app's lifespan, so that
    ``aclose()`` sends the rest before the loop ends. Events still queued at interpreter
    exit without ``aclose()`` cannot be sent (the loop is gone): they are logged and handed
    to ``on_error``.
    """

    def __init__(
        self,
        client: AsyncClient,
        *,
        max_events: int = 1000,
        max_interval_s: float = 5.0,
        max_buffer: int = 50_000,
        when_full: WhenFull = "drop_oldest",
        on_error: OnError | None = None,
        batch_size: int = MAX_BATCH_RECORDS,
    ) -> None:
        client._session.check_ingest_key()  # refused now, not at the first send
        self._client = client
        self._core = _Core(client.appid, max_events, max_interval_s, max_buffer, when_full,
                           on_error)  # fmt: skip
        self._batch_size = batch_size
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    @property
    def stats(self) -> BufferStats:
        return self._core.stats

    def __len__(self) -> int:
        return len(self._core.queue)

    async def __aenter__(self) -> AsyncEventBuffer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="userportrait-events")
            atexit.register(self._at_exit)

    async def add(self, event: Mapping[str, Any]) -> None:
        """Queue one event; waits only with ``when_full="block"`` and a full buffer."""
        item = self._core.prepare(event)
        while self._core.when_full == "block" and self._core.full() and not self._core.closed:
            self._room.clear()
            await self._room.wait()
        if self._core.closed:
            raise RuntimeError("the event buffer is closed")
        dropped = self._core.push(item)
        self._wake.set()
        if dropped:
            self._core.failed(dropped, BufferFull(f"{len(dropped)} dropped"), "dropped")

    async def flush(self) -> None:
        async with self._send_lock:
            items = self._core.take()
            self._room.set()
            if not items:
                return
            try:
                summary = await self._client._send_ready(items, self._batch_size)
            except EventsNotSent as exc:
                self._core.sent(exc.summary)
                self._core.failed(exc.unsent, exc, "failed")
            except Exception as exc:
                self._core.failed([r.event for _, r in items], exc, "failed")
            else:
                self._core.sent(summary)

    async def aclose(self) -> None:
        if self._core.closed:
            return
        self._core.closed = True
        self._wake.set()
        if self._task is not None:
            await self._task
        await self.flush()
        atexit.unregister(self._at_exit)

    async def _run(self) -> None:
        while not self._core.closed:
            if not self._core.due():
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self._core.timeout())
                except TimeoutError:
                    pass
                continue
            await self.flush()

    def _at_exit(self) -> None:
        items = self._core.take()
        if items:
            events = [r.event for _, r in items]
            self._core.failed(events, RuntimeError("interpreter exit before aclose()"), "failed")
