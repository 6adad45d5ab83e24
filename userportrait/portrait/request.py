"""Parse and validate a portrait request (WeChat body or CLI arguments) into a query."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Final

from userportrait.errors import InvalidDate, InvalidDateRange, InvalidRequest
from userportrait.json_body import json_object
from userportrait.portrait.query import PortraitQuery, today_shanghai, yyyymmdd
from userportrait.portrait.rules import WECHAT_SPANS
from userportrait.portrait.segments import parse_by, parse_compare, parse_filters

# ASCII digits only: \d would take ２０２４ or ٢٠٢٤ too, and int() reads them.
_DATE_RE: Final = re.compile(r"([0-9]{4})(-?)([0-9]{2})\2([0-9]{2})")


def parse_date(value: object, field: str) -> dt.date:
    """``yyyymmdd`` or ``yyyy-mm-dd`` -> date; InvalidDate (61500) otherwise."""
    if not isinstance(value, str):
        raise InvalidDate(f"{field} must be a string yyyymmdd")
    match = _DATE_RE.fullmatch(value.strip())
    if not match:
        raise InvalidDate(f"{field} {value[:20]!r} is not yyyymmdd")
    try:
        return dt.date(int(match[1]), int(match[3]), int(match[4]))
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
    filters: Sequence[str] = (),
    by: str | None = None,
    compare: str | None = None,
) -> PortraitQuery:
    """A validated query; with ``wechat_limits`` only 1/7/30-day spans ending <= yesterday.

    An app with a small-count ``threshold`` answers only such windows on every route
    (docs/privacy.md: comparing [b, e] with [b, e+1] would undo the folding).
    ``filters`` (``DIM=ID``), ``by`` (``DIM,DIM``) and ``compare`` (``previous``) as the
    native API and the CLI take them (``portrait/segments.py``; 40097 when wrong).
    """
    parsed_filters = parse_filters(filters)
    parsed_by = parse_by(by) if by else None
    parsed_compare = parse_compare(compare)
    if end < begin:
        raise InvalidDateRange("end_date is before begin_date")
    span = (end - begin).days + 1
    if wechat_limits or threshold is not None:
        why = "" if wechat_limits else " (the app is protected by a small-count threshold)"
        if span not in WECHAT_SPANS:
            raise InvalidDateRange(f"span is {span} days; allowed 1, 7 or 30{why}")
        yesterday = (today or today_shanghai()) - dt.timedelta(days=1)
        if end > yesterday:
            raise InvalidDateRange(f"end_date must be {yyyymmdd(yesterday)} or earlier{why}")
    return PortraitQuery(
        appid=appid,
        begin=begin,
        end=end,
        threshold=threshold,
        filters=parsed_filters,
        by=parsed_by,
        compare=parsed_compare,
    )


def parse_body(raw: bytes, *, camel: bool = False) -> tuple[dt.date, dt.date]:
    """The dates of a datacube JSON body, whatever its Content-Type said."""
    body = json_object(raw)
    keys = ("beginDate", "endDate") if camel else ("begin_date", "end_date")
    if camel and "beginDate" not in body and "begin_date" in body:
        # The cloud-call seed: "出入参和 HTTPS 调用相同", so its snake_case body works too.
        keys = ("begin_date", "end_date")
    for key in keys:
        if key not in body:
            raise InvalidRequest(f"{key} is missing")
        if not isinstance(body[key], str):
            raise InvalidRequest(f"{key} must be a string")
    return parse_date(body[keys[0]], keys[0]), parse_date(body[keys[1]], keys[1])
