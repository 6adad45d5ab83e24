"""Profile attributes (docs/ingest.md): a user's gender, birth date and region, as the app has them.

A profile record is checked and normalised here, by one function for every way it arrives
(files and ``POST /v1/profiles``), with the event normalisers of ``normalize.py``. The
rules (docs/ingest.md, docs/semantics.md):

* ``birth_date`` is ``YYYY-MM-DD`` or ``YYYYMMDD``; ``birth_year`` Y, used when there is no
  ``birth_date``, counts as born on 1 July Y (the middle of the year: an age is then off by
  at most half a year either way), or on the day of ingest when that is earlier.
* A birth date after the day of ingest or more than ``MAX_AGE_YEARS`` years before it is
  refused (a typo, not a person).
* ``updated_at`` takes the forms of an event ``ts``; missing, it is the time of ingest.
  One more than ``UPDATED_AT_SKEW_US`` after the time of ingest is refused: the latest
  record wins, so a record dated 9999 would pin the user's profile forever.
* The age a profile gives is the age in whole years on a window's last day
  (``age_on``): born 2000-07-15, a window ending 2024-07-14 sees 23, one ending
  2024-07-15 sees 24. A window that ends before the birth sees no age.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from userportrait.portrait.dims import age_bucket
from userportrait.portrait.normalize import normalize_gender, resolve_region
from userportrait.portrait.query import TZ
from userportrait.portrait.rules import (
    PROFILE_FIELDS,
    RecordError,
    Reject,
    check_envelope,
    ts_in_range,
)

#: A birth date further back than this many years before the ingest day is refused.
MAX_AGE_YEARS: Final = 120
#: How far after the time of ingest an ``updated_at`` may lie (clock skew between hosts).
UPDATED_AT_SKEW_US: Final = 86_400 * 1_000_000
#: ``birth_year`` Y counts as born on this (month, day) of Y.
BIRTH_YEAR_DAY: Final = (7, 1)

_DATE_RE: Final = re.compile(r"([0-9]{4})-?([0-9]{2})-?([0-9]{2})")
_YEAR_RE: Final = re.compile(r"[0-9]{4}")


@dataclass(frozen=True, slots=True)
class Profile:
    """One accepted profile record: normalised ids beside the raw strings they came from."""

    appid: str
    openid: str
    updated_at_us: int  # epoch microseconds
    gender_id: int | None
    birth_date: dt.date | None
    province_id: int | None
    city_id: int | None
    gender_raw: str | None
    province_raw: str | None
    city_raw: str | None
    birth_raw: str | None  # birth_date, else birth_year, as given


#: Parses an ``updated_at`` value into epoch microseconds, or raises ValueError (the
#: event ``ts`` parser of ``ingest/records.py``, passed in: ``portrait/`` imports no ingest).
TimeParser = Callable[[Any], int]


def check_profile(
    record: Any, now_us: int, parse_time: TimeParser, appid: str | None = None
) -> Profile:
    """The normalised profile, or RecordError naming the field and the problem.

    ``record`` maps field names to JSON scalars (a file's row: text); ``now_us`` is the
    time of ingest (epoch microseconds); ``appid``: the ingest key's app, when one is required.
    """
    envelope = check_envelope(record, PROFILE_FIELDS, PROFILE_FIELDS, "python")
    text, app, openid = envelope.text, envelope.appid, envelope.openid
    updated = text["updated_at"]
    if updated is None:
        updated_us = now_us
    else:
        try:
            updated_us = parse_time(record["updated_at"])
        except ValueError:
            raise RecordError(Reject.UPDATED_AT_INVALID.text(value=updated)) from None
        if not ts_in_range(updated_us):
            raise RecordError(Reject.UPDATED_AT_RANGE.text(value=updated))
        if updated_us > now_us + UPDATED_AT_SKEW_US:
            raise RecordError(Reject.UPDATED_AT_FUTURE.text(value=updated))
    today = _day_of_us(now_us)
    birth, birth_raw = _birth(text["birth_date"], text["birth_year"], today)
    if appid is not None and app != appid:
        raise RecordError(Reject.APPID_NOT_TOKENS.text())
    province_id, city_id = _region(text["province"], text["city"])
    return Profile(
        appid=app,
        openid=openid,
        updated_at_us=updated_us,
        gender_id=_gender(text["gender"]),
        birth_date=birth,
        province_id=province_id,
        city_id=city_id,
        gender_raw=text["gender"],
        province_raw=text["province"],
        city_raw=text["city"],
        birth_raw=birth_raw,
    )


def _birth(
    date_raw: str | None, year_raw: str | None, today: dt.date
) -> tuple[dt.date | None, str | None]:
    """(birth date, the raw text it came from); ``birth_date`` wins over ``birth_year``."""
    year, raw = None, date_raw if date_raw is not None else year_raw
    if year_raw is not None:
        year_text = _strip_point_zero(year_raw.strip())
        if not _YEAR_RE.fullmatch(year_text) or int(year_text) < 1:
            raise RecordError(Reject.BIRTH_YEAR_INVALID.text(value=year_raw))
        year = int(year_text)
    if date_raw is not None:
        match = _DATE_RE.fullmatch(_strip_point_zero(date_raw.strip()))
        try:
            if match is None:
                raise ValueError(date_raw)
            birth = dt.date(*(int(g) for g in match.groups()))
        except ValueError:
            raise RecordError(Reject.BIRTH_DATE_INVALID.text(value=date_raw)) from None
    elif year is not None:
        birth = dt.date(year, *BIRTH_YEAR_DAY)
        if year == today.year:  # born this year: not after today
            birth = min(birth, today)
    else:
        return None, None
    if birth > today:
        raise RecordError(Reject.BIRTH_FUTURE.text(value=raw))
    if birth < _years_before(today, MAX_AGE_YEARS):
        raise RecordError(Reject.BIRTH_TOO_OLD.text(value=raw))
    return birth, raw


# Raw values repeat across records: each distinct one is normalised once.
_region = functools.lru_cache(maxsize=1 << 16)(resolve_region)
_gender = functools.lru_cache(maxsize=1 << 10)(normalize_gender)


def _strip_point_zero(text: str) -> str:
    return text[:-2] if text.endswith(".0") else text  # a float-typed column: 1990.0


def _years_before(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def age_on(birth: dt.date, day: dt.date) -> int:
    """Whole years from ``birth`` to ``day`` (a 29 February birthday comes on 1 March)."""
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def profile_age_id(birth: dt.date | None, end: dt.date) -> int | None:
    """The ``ages`` id a birth date gives a window ending on ``end`` (None: no age)."""
    if birth is None or birth > end:
        return None
    return age_bucket(age_on(birth, end))


_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@functools.lru_cache(maxsize=64)  # one ingest time per batch: computed once
def _day_of_us(us: int) -> dt.date:
    return (_EPOCH + dt.timedelta(microseconds=us)).astimezone(TZ).date()


def now_us() -> int:
    """The current time in epoch microseconds (the ``updated_at`` of a record without one)."""
    return int((dt.datetime.now(dt.UTC) - _EPOCH) / dt.timedelta(microseconds=1))
