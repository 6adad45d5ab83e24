"""Read and idle timeouts for the connections uvicorn serves (issue 10).

uvicorn times out a keep-alive connection between requests, but not one that never sends
a request, nor a request whose headers or body stop arriving: a slow client held its
connection (and its half-read body) forever. ``server_options(settings)`` gives uvicorn a
protocol that closes such a connection: an idle one after ``http_idle_timeout_s``, one in
the middle of a request after ``http_read_timeout_s`` without a byte (answered 408 when
nothing was answered yet). While the app works on a complete request no timer runs, so a
slow portrait is never cut off.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from userportrait.settings import Settings

log = logging.getLogger("userportrait.api")
_TIMEOUT_408 = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 16\r\nconnection: close\r\n\r\nrequest timeout\n"
)


def server_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` / ``uvicorn.Config``."""
    return {
        "http": timed_protocol(
            settings.http_read_timeout_s, settings.http_idle_timeout_s, settings.http_impl
        ),
        "timeout_keep_alive": settings.http_idle_timeout_s,
        # uvicorn's default rewrites the peer from X-Forwarded-For for 127.0.0.1, so a local
        # client could name any address (issue 24). The app reads the header itself, only
        # from USERPORTRAIT_TRUSTED_PROXIES (auth/allowlist.py).
        "proxy_headers": False,
    }


def timed_protocol(
    read_timeout_s: float, idle_timeout_s: float, impl: str = "h11"
) -> type[asyncio.Protocol]:
    """uvicorn's HTTP/1.1 protocol (``impl``: h11 or httptools) with the two timers."""
    if impl == "httptools":
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base
    else:  # h11 keeps response header names as written (WxJava reads Wechatmp-* so)
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base  # type: ignore[assignment]

    class TimedProtocol(Base):
        _timer: asyncio.TimerHandle | None = None
        _midway = False  # the timer running is the read timer (a request is arriving)

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm(idle_timeout_s, midway=False)

        def data_received(self, data: bytes) -> None:
            self._disarm()
            super().data_received(data)
            if self._reading() and not self.transport.is_closing():
                self._arm(read_timeout_s, midway=True)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _reading(self) -> bool:
            """Headers or body of a request are still to come."""
            cycle = self.cycle
            return cycle is None or cycle.response_complete or cycle.more_body

        def _arm(self, seconds: float, *, midway: bool) -> None:
            self._disarm()
            self._midway = midway
            self._timer = self.loop.call_later(seconds, self._expired)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _expired(self) -> None:
            self._timer = None
            if self.transport.is_closing():
                return
            if self.flow is not None and self.flow.read_paused:  # the app is not reading yet
                self._arm(read_timeout_s, midway=self._midway)
                return
            cycle = self.cycle
            answered = cycle is not None and cycle.response_started and not cycle.response_complete
            if self._midway and not answered:
                self.transport.write(_TIMEOUT_408)
            log.info("client %s timed out: no bytes for a while; connection closed", self.client)
            self.transport.close()

    return TimedProtocol
