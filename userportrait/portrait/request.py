"""Parse and validate a portrait request (WeChat body or CLI arguments) into a query."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any, Final

from userportrait.errors import EmptyPostData, InvalidDate, InvalidDateRange, InvalidRequest
from userportrait.portrait.query import PortraitQuery, today_shanghai

WECHAT_SPANS: Final = (1, 7, 30)
_DATE_RE: Final = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})$")


def parse_date(value: object, field: str) -> dt.date:
    """``yyyymmdd`` or ``yyyy-mm-dd`` -> date; InvalidDate (61500) otherwise."""
    if not isinstance(value, str):
        raise InvalidDate(f"{field} must be a string yyyymmdd")
    match = _DATE_RE.match(value.strip())
    if not match:
        raise InvalidDate(f"{field} {value[:20]!r} is not yyyymmdd")
    try:
        return dt.date(*(int(g) for g in match.groups()))
    except ValueError:
        raise InvalidDate(f"{field} {value[:20]!r} is not a calendar date") from None


def make_query(
    appid: str,
    begin: dt.date,
    end: dt.date,
    *,
    wechat_limits: bool = False,
    today: dt.date | None = None,
    threshold: int | None = None,
) -> PortraitQuery:
    """A validated query; with ``wechat_limits`` only 1/7/30-day spans ending <= yesterday.

    An app with a small-count ``threshold`` answers only such windows on every route
    (docs/privacy.md: comparing [b, e] with [b, e+1] would undo the folding).
    """
    if end < begin:
        raise InvalidDateRange("end_date is before begin_date")
    span = (end - begin).days + 1
    if wechat_limits or threshold is not None:
        why = "" if wechat_limits else " (the app is protected by a small-count threshold)"
        if span not in WECHAT_SPANS:
            raise InvalidDateRange(f"span is {span} days; allowed 1, 7 or 30{why}")
        yesterday = (today or today_shanghai()) - dt.timedelta(days=1)
        if end > yesterday:
            raise InvalidDateRange(f"end_date must be {yesterday:%Y%m%d} or earlier{why}")
    return PortraitQuery(appid=appid, begin=begin, end=end, threshold=threshold)


def parse_body(raw: bytes, *, camel: bool = False) -> tuple[dt.date, dt.date]:
    """The dates of a datacube JSON body, whatever its Content-Type said."""
    if not raw.strip():
        raise EmptyPostData()
    try:
        body: Any = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidRequest("body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidRequest("body must be a JSON object")
    keys = ("beginDate", "endDate") if camel else ("begin_date", "end_date")
    for key in keys:
        if key not in body:
            raise InvalidRequest(f"{key} is missing")
        if not isinstance(body[key], str):
            raise InvalidRequest(f"{key} must be a string")
    return parse_date(body[keys[0]], keys[0]), parse_date(body[keys[1]], keys[1])
