"""Per-app call quotas for the datacube API (45009 per day, 45011 per minute)."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable

from userportrait.errors import DailyQuotaExceeded, MinuteQuotaExceeded


class Quota:
    def __init__(self, per_day: int, per_minute: int, now: Callable[[], float] = time.time) -> None:
        self.per_day = per_day
        self.per_minute = per_minute
        self.now = now
        self._counts: dict[tuple[str, str, int], int] = defaultdict(int)
        self._lock = threading.Lock()

    def charge(self, appid: str) -> None:
        """Count one call, or raise when a limit (0 = none) is reached."""
        t = self.now()
        day, minute = int(t // 86_400), int(t // 60)
        with self._lock:
            if self.per_day and self._counts[(appid, "d", day)] >= self.per_day:
                raise DailyQuotaExceeded()
            if self.per_minute and self._counts[(appid, "m", minute)] >= self.per_minute:
                raise MinuteQuotaExceeded()
            self._counts[(appid, "d", day)] += 1
            self._counts[(appid, "m", minute)] += 1
            for key in [
                k
                for k in self._counts
                if (k[1] == "d" and k[2] < day) or (k[1] == "m" and k[2] < minute)
            ]:
                del self._counts[key]
