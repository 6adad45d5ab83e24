"""Brute force and cost limits on every secret check (``api/doors.secret``: app secrets on
``/cgi-bin/token``, ``stable_token`` and the dashboard sign-in, the admin key, sign-in codes,
platform secrets and tickets on ``api_component_token``).

One scrypt check costs ~16 MiB and ~50 ms of a core, so unauthenticated wrong-secret
calls must neither run unbounded nor crowd out the rightful caller:

* failed checks are counted per subject (``app:wx…``, ``admin``, ``component:wx…``) and
  per client address over a sliding minute; past the limit a call is refused *before* the
  check with 45011, WeChat's minute-quota code; a client that gave the right secret for the
  subject in the last day is not held back by the subject's count (an attacker elsewhere
  cannot lock the app's own server out);
* at most ``concurrent`` checks run at once and at most ``queue`` wait; more get -1
  ``system busy`` (HTTP 503) at once;
* the rightful caller's repeat check is a keyed hash compared in memory (``AuthStore``),
  which skips scrypt and this queue.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from userportrait.errors import (
    Busy,
    InvalidAppId,
    InvalidAppSecret,
    InvalidCredential,
    MinuteQuotaExceeded,
    TicketExpired,
    TicketInvalid,
)
from userportrait.metrics import SECRET_CHECKS

T = TypeVar("T")
WINDOW_S: Final = 60.0
GOOD_FOR_S: Final = 86_400.0
#: What a wrong guess raises: each counts as a failure of the subject and the address.
WRONG: Final = (InvalidAppSecret, InvalidAppId, InvalidCredential, TicketInvalid, TicketExpired)


class SecretGuard:
    def __init__(
        self, *, per_app: int = 10, per_client: int = 20, concurrent: int = 2, queue: int = 8,
        now: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.per_app = per_app
        self.per_client = per_client
        self.queue = queue
        self.now = now
        self._slots = asyncio.Semaphore(concurrent)
        self._waiting = 0
        self._fails: dict[str, deque[float]] = defaultdict(deque)
        self._good: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, t: float) -> int:
        q = self._fails.get(key)
        if q is None:
            return 0
        while q and q[0] <= t - WINDOW_S:
            q.popleft()
        if not q:
            del self._fails[key]
            return 0
        return len(q)

    def admit(self, appid: str, client: str) -> None:
        """Raise 45011 if this client or (for a client not known good) this appid failed too often."""
        with self._lock:
            self._refused(lambda: self._admit(appid, client, self.now()))

    @staticmethod
    def _refused(admit: Callable[[], None]) -> None:
        try:
            admit()
        except MinuteQuotaExceeded:
            SECRET_CHECKS.labels("refused").inc()
            raise

    def _admit(self, appid: str, client: str, t: float) -> None:
        """``admit`` under the lock."""
        if self.per_client and self._recent("c:" + client, t) >= self.per_client:
            raise MinuteQuotaExceeded("too many wrong secrets from this address")
        good = self._good.get((appid, client), -GOOD_FOR_S) > t - GOOD_FOR_S
        if self.per_app and not good and self._recent("a:" + appid, t) >= self.per_app:
            raise MinuteQuotaExceeded(
                f"too many wrong secrets for {appid.partition(':')[2] or appid}"
            )

    def record(self, appid: str, client: str, ok: bool) -> None:
        t = self.now()
        with self._lock:
            if ok:
                self._good[(appid, client)] = t
                if len(self._good) > 100_000:  # bounded: forget the oldest half
                    for key, _ in sorted(self._good.items(), key=lambda kv: kv[1])[:50_000]:
                        del self._good[key]
                return
            self._fails["a:" + appid].append(t)
            self._fails["c:" + client].append(t)
            if len(self._fails) > 100_000:
                for name in list(self._fails):
                    self._recent(name, t)

    def _hold(self, appid: str, client: str) -> float:
        """Admit, and count the check as a failure until it is known to be right: guesses
        sent at once are all counted before any of them runs (a cheap check has no queue)."""
        t = self.now()
        with self._lock:
            self._refused(lambda: self._admit(appid, client, t))
            self._fails["a:" + appid].append(t)
            self._fails["c:" + client].append(t)
        return t

    def _settle(self, appid: str, client: str, t: float, ok: bool) -> None:
        """A held check is over and was no wrong guess: its failure is taken back."""
        with self._lock:
            for key in ("a:" + appid, "c:" + client):
                q = self._fails.get(key)
                if q is not None and t in q:
                    q.remove(t)
        if ok:
            self.record(appid, client, ok=True)

    async def check(
        self, appid: str | None, client: str, run: Callable[[], Awaitable[T]], cheap: bool,
        known: bool = False,
    ) -> T:  # fmt: skip
        """``run()`` (a secret check) under the limits; ``cheap`` when it will skip scrypt;
        ``known`` when the secret is the one last verified right for ``appid``: no guess, so
        it is neither held as a failure nor refused (50 of a backend's workers asking for a
        token at once must not read as 50 guesses), but counted should it fail after all
        (the secret changed meanwhile)."""
        if not appid:
            return await run()  # 41002 at once, no secret is checked
        if known:
            return await self._known(appid, client, run)
        if cheap:  # no queue: admitted and counted at once
            return await self._held(appid, client, run)
        self.admit(appid, client)  # refused before it queues
        if self._waiting >= self.queue:
            SECRET_CHECKS.labels("busy").inc()
            raise Busy("too many secret checks at once")
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            return await self._held(appid, client, run)  # failures may have piled up meanwhile
        finally:
            self._slots.release()

    async def _known(self, appid: str, client: str, run: Callable[[], Awaitable[T]]) -> T:
        try:
            result = await run()
        except WRONG:
            SECRET_CHECKS.labels("wrong").inc()
            self.record(appid, client, ok=False)
            raise
        self.record(appid, client, ok=True)
        SECRET_CHECKS.labels("right").inc()
        return result

    async def _held(self, appid: str, client: str, run: Callable[[], Awaitable[T]]) -> T:
        t = self._hold(appid, client)
        try:
            result = await run()
        except WRONG:
            SECRET_CHECKS.labels("wrong").inc()
            raise  # the held failure stays counted
        except BaseException:
            self._settle(appid, client, t, ok=False)
            raise
        self._settle(appid, client, t, ok=True)
        SECRET_CHECKS.labels("right").inc()
        return result
