"""The portrait query: a value that flows parse -> plan -> engine -> shape."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

TZ = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True, slots=True)
class PortraitQuery:
    """Portrait of ``appid`` over the inclusive Asia/Shanghai day window [begin, end].

    ``threshold`` is the app's small-count k (docs/privacy.md); None shows exact rows.
    """

    appid: str
    begin: dt.date
    end: dt.date
    threshold: int | None = None

    def __post_init__(self) -> None:
        if self.end < self.begin:
            raise ValueError("end before begin")

    @property
    def days(self) -> int:
        return (self.end - self.begin).days + 1


def today_shanghai(now: dt.datetime | None = None) -> dt.date:
    """Today's date in Asia/Shanghai (WeChat's 'yesterday' limit is relative to it)."""
    now = now or dt.datetime.now(dt.UTC)
    return now.astimezone(TZ).date()


def yyyymmdd(day: dt.date) -> str:
    """Four-digit years, whatever the platform's strftime does with years below 1000."""
    return f"{day.year:04d}{day.month:02d}{day.day:02d}"
