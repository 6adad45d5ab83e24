"""Per-app call quotas for the datacube API (45009 per day, 45011 per minute).

Days are Asia/Shanghai calendar days, as WeChat counts them. Daily counts are kept in the
access policy file when one is given, so a restart does not reset them; minute counts
live in memory.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import defaultdict
from collections.abc import Callable

from userportrait.auth.policy import Policy
from userportrait.errors import DailyQuotaExceeded, MinuteQuotaExceeded
from userportrait.portrait.query import TZ


class Quota:
    def __init__(
        self, per_day: int, per_minute: int, now: Callable[[], float] = time.time,
        policy: Policy | None = None,
    ) -> None:  # fmt: skip
        self.per_day = per_day
        self.per_minute = per_minute
        self.now = now
        self.policy = policy
        self._days: dict[tuple[str, str], int] = defaultdict(int)  # without a policy
        self._minutes: dict[tuple[str, int], int] = defaultdict(int)
        self._lock = threading.Lock()

    def charge(self, appid: str) -> None:
        """Count one call, or raise when a limit (0 = none) is reached."""
        t = self.now()
        day = dt.datetime.fromtimestamp(t, TZ).date().isoformat()
        minute = int(t // 60)
        with self._lock:
            if self.per_minute and self._minutes[(appid, minute)] >= self.per_minute:
                raise MinuteQuotaExceeded()
            if self.per_day and not self._add_day(appid, day):
                raise DailyQuotaExceeded()
            self._minutes[(appid, minute)] += 1
            for key in [k for k in self._minutes if k[1] < minute]:
                del self._minutes[key]

    def _add_day(self, appid: str, day: str) -> bool:
        if self.policy is not None:
            return self.policy.add_call(appid, day, self.per_day)
        if self._days[(appid, day)] >= self.per_day:
            return False
        self._days[(appid, day)] += 1
        for key in [k for k in self._days if k[1] < day]:
            del self._days[key]
        return True
