"""The portrait query: a value that flows parse -> plan -> engine -> shape."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import Literal
from zoneinfo import ZoneInfo

from userportrait.portrait.dims import Dim

TZ = ZoneInfo("Asia/Shanghai")


#: A filter's value: an id, or for ``devices`` a model name (None: 未知).
FilterValue = int | str | None
Filter = tuple[Dim, FilterValue]


@dataclass(frozen=True, slots=True)
class PortraitQuery:
    """Portrait of ``appid`` over the inclusive Asia/Shanghai day window [begin, end].

    ``threshold`` is the app's small-count k (docs/privacy.md); None shows exact rows.
    ``filters``: only the users whose window value of each dim is the given one (AND;
    docs/semantics.md). ``by``: a cross-tab of two dims instead of the six lists.
    ``compare``: also the window of the same length just before (``previous``), shaped
    together by ``portrait/service.py``; engines never see it set.
    """

    appid: str
    begin: dt.date
    end: dt.date
    threshold: int | None = None
    filters: tuple[Filter, ...] = ()
    by: tuple[Dim, Dim] | None = None
    compare: Literal["previous"] | None = None

    def __post_init__(self) -> None:
        if self.end < self.begin:
            raise ValueError("end before begin")

    @property
    def days(self) -> int:
        return (self.end - self.begin).days + 1

    @property
    def plain(self) -> bool:
        """No filter and no cross-tab: the six lists of every user in the window."""
        return not self.filters and self.by is None

    def previous(self) -> PortraitQuery:
        """The window of the same length just before, without ``compare``."""
        shift = dt.timedelta(days=self.days)
        return replace(self, begin=self.begin - shift, end=self.end - shift, compare=None)

    def current(self) -> PortraitQuery:
        """This window without ``compare`` (what an engine is asked)."""
        return replace(self, compare=None)


def today_shanghai(now: dt.datetime | None = None) -> dt.date:
    """Today's date in Asia/Shanghai (WeChat's 'yesterday' limit is relative to it)."""
    now = now or dt.datetime.now(dt.UTC)
    return now.astimezone(TZ).date()


def yyyymmdd(day: dt.date) -> str:
    """Four-digit years, whatever the platform's strftime does with years below 1000."""
    return f"{day.year:04d}{day.month:02d}{day.day:02d}"
