"""Read, header and idle timeouts, and a cap on connections per address, for the
connections uvicorn serves (docs/api.md "Limits and timeouts").

uvicorn times out a keep-alive connection between requests, but not one that never sends
a request, nor a request whose headers or body stop arriving: a slow client held its
connection (and its half-read body) forever. ``server_options(settings)`` gives uvicorn a
protocol that closes such a connection: an idle one after ``http_idle_timeout_s``, one in
the middle of a request after ``http_read_timeout_s`` without a byte (answered 408 when
nothing was answered yet). While the app works on a complete request no timer runs, so a
slow portrait is never cut off.

The read timer starts again at every byte, so headers trickled a line at a time kept a
connection for minutes, and one address held 19,600 of them at once. Two
bounds more: a request's headers must be complete within ``http_header_timeout_s`` of
its first byte, however they trickle (408), and one address may hold at most
``http_max_connections_per_address`` connections (more are answered 503 and closed as
they open; ``trusted_proxies`` are exempt, every caller behind them shares their address).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

from userportrait.auth.allowlist import Network, is_within, parse_networks
from userportrait.settings import Settings

log = logging.getLogger("userportrait.api")
_TIMEOUT_408 = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 16\r\nconnection: close\r\n\r\nrequest timeout\n"
)
_BUSY_503 = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 21\r\nretry-after: 1\r\nconnection: close\r\n\r\n"
    b"too many connections\n"
)


def server_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` / ``uvicorn.Config``."""
    return {
        "http": timed_protocol(
            settings.http_read_timeout_s,
            settings.http_idle_timeout_s,
            settings.http_impl,
            header_timeout_s=settings.http_header_timeout_s,
            max_connections_per_address=settings.http_max_connections_per_address,
            exempt=parse_networks(settings.trusted_proxies.split(",")),
        ),  # fmt: skip
        "timeout_keep_alive": settings.http_idle_timeout_s,
        # uvicorn's default rewrites the peer from X-Forwarded-For for 127.0.0.1, so a local
        # client could name any address. The app reads the header itself, only
        # from USERPORTRAIT_TRUSTED_PROXIES (auth/allowlist.py).
        "proxy_headers": False,
    }


def timed_protocol(
    read_timeout_s: float, idle_timeout_s: float, impl: str = "h11", *,
    header_timeout_s: float | None = None, max_connections_per_address: int = 0,
    exempt: Sequence[Network] = (),
) -> type[asyncio.Protocol]:  # fmt: skip
    """uvicorn's HTTP/1.1 protocol (``impl``: h11 or httptools) with the timers and the cap
    (0 = none) on connections per address; ``exempt`` addresses are not capped."""
    if impl == "httptools":
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base
    else:  # h11 keeps response header names as written (WxJava reads Wechatmp-* so)
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base  # type: ignore[assignment]

    header_s = read_timeout_s if header_timeout_s is None else header_timeout_s
    # One class per server, so one count per server; all its protocols run on one loop.
    open_by_address: Counter[str] = Counter()
    refusing: set[str] = set()  # addresses at the cap, logged once until they drop below

    class TimedProtocol(Base):
        _timer: asyncio.TimerHandle | None = None
        _midway = False  # the timer running is the read timer (a request is arriving)
        _headers_by: float | None = None  # loop time the current headers must be complete by
        _counted: str | None = None  # the address this connection counts against

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            if self._refused():
                return
            self._arm(idle_timeout_s, midway=False)

        def _refused(self) -> bool:
            """Count this connection against its address; True (answered 503) past the cap."""
            address = self.client[0] if self.client else ""
            if not max_connections_per_address or is_within(address, exempt):
                return False
            if open_by_address[address] >= max_connections_per_address:
                if address not in refusing:
                    refusing.add(address)
                    log.warning(
                        "client %s holds %d connections; refusing more",
                        address, max_connections_per_address,
                    )  # fmt: skip
                self.transport.write(_BUSY_503)
                self.transport.close()
                return True
            open_by_address[address] += 1
            self._counted = address
            return False

        def data_received(self, data: bytes) -> None:
            self._disarm()
            if self._headers_by is None and self._awaiting_headers():
                self._headers_by = self.loop.time() + header_s  # a request's first byte
            super().data_received(data)
            if not self._awaiting_headers():
                self._headers_by = None
            if self._reading() and not self.transport.is_closing():
                seconds = read_timeout_s
                if self._headers_by is not None:  # trickling cannot stretch the headers
                    seconds = min(seconds, max(self._headers_by - self.loop.time(), 0.0))
                self._arm(seconds, midway=True)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self._counted is not None:
                open_by_address[self._counted] -= 1
                if open_by_address[self._counted] <= 0:
                    del open_by_address[self._counted]
                refusing.discard(self._counted)  # below the cap again
                self._counted = None
            super().connection_lost(exc)

        def _awaiting_headers(self) -> bool:
            """No request is in progress: bytes that arrive are a next request's headers."""
            cycle = self.cycle
            return cycle is None or cycle.response_complete

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
            log.info(
                "client %s timed out: request too slow or idle; connection closed", self.client
            )
            self.transport.close()

    return TimedProtocol
