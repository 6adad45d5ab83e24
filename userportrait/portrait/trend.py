"""The daily trend of a window: active and new users per day, from one-day portraits.

A day's total is the sum of its ``genders`` rows: every user has exactly one gender value
in a window (未知 when none was seen), so the rows partition the users. One-day answers come
from the server's own portrait path (cached, time-limited), a few ms each on the store.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any, Final

from userportrait.errors import InvalidDateRange
from userportrait.portrait.query import PortraitQuery, yyyymmdd

MAX_TREND_DAYS: Final = 366


def total(audience: dict[str, list[dict[str, Any]]]) -> int:
    return sum(int(r["value"]) for r in audience["genders"])


async def daily_trend(
    query: PortraitQuery, run: Callable[[PortraitQuery], Awaitable[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """``[{"date": "yyyymmdd", "active": n, "new": n}, …]`` for each day of the window."""
    if query.days > MAX_TREND_DAYS:
        raise InvalidDateRange(f"the trend covers at most {MAX_TREND_DAYS} days")
    out = []
    for i in range(query.days):
        day = query.begin + dt.timedelta(days=i)
        # The window's threshold too: a protected app's days are folded like its portraits.
        body = await run(PortraitQuery(query.appid, day, day, threshold=query.threshold))
        out.append(
            {
                "date": yyyymmdd(day),
                "active": total(body["visit_uv"]),
                "new": total(body["visit_uv_new"]),
            }
        )
    return out
