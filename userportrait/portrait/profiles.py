"""Profile attributes (issue 17): one user's gender, birth date and region, as the app knows them.

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
  record wins, so a record dated 9999 would pin the user's profile forever (issue 24).
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
from enum import StrEnum
from typing import Any, Final

from userportrait.portrait.dims import age_bucket
from userportrait.portrait.normalize import normalize_gender, resolve_region
from userportrait.portrait.query import TZ
from userportrait.portrait.rules import MAX_FIELD_CHARS, QUOTE_CHARS, Reject, appid_problem

#: The fields of a profile record, in the order their types are checked.
PROFILE_FIELDS: Final = (
    "appid", "openid", "updated_at", "gender", "birth_date", "birth_year", "province", "city",
)  # fmt: skip
PROFILE_REQUIRED: Final = ("appid", "openid")
#: A birth date further back than this many years before the ingest day is refused.
MAX_AGE_YEARS: Final = 120
#: How far after the time of ingest an ``updated_at`` may lie (clock skew between hosts).
UPDATED_AT_SKEW_US: Final = 86_400 * 1_000_000
#: ``birth_year`` Y counts as born on this (month, day) of Y.
BIRTH_YEAR_DAY: Final = (7, 1)

_DATE_RE: Final = re.compile(r"([0-9]{4})-?([0-9]{2})-?([0-9]{2})")
_YEAR_RE: Final = re.compile(r"[0-9]{4}")
_JSON_TYPES: Final = {dict: "object", list: "array", bool: "boolean"}


class ProfileReject(StrEnum):
    """Why a profile record is refused, beside the event reasons it shares (``Reject``)."""

    UPDATED_AT_INVALID = "updated_at is not a timestamp: {value}"
    UPDATED_AT_RANGE = "updated_at is outside the years 1970..9999 (Asia/Shanghai): {value}"
    UPDATED_AT_FUTURE = "updated_at is more than a day after the time of ingest: {value}"
    BIRTH_DATE_INVALID = "birth_date is not a date (YYYY-MM-DD or YYYYMMDD): {value}"
    BIRTH_YEAR_INVALID = "birth_year is not a year (YYYY): {value}"
    BIRTH_FUTURE = "birth date is after the day of ingest: {value}"
    BIRTH_TOO_OLD = "birth date is more than 120 years before the day of ingest: {value}"

    def text(self, value: object) -> str:
        return self.value.format(value=str(value)[:QUOTE_CHARS])


class ProfileError(ValueError):
    """Why one profile record was rejected (the text names the field)."""


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
    """The normalised profile, or ProfileError naming the field and the problem.

    ``record`` maps field names to JSON scalars (a file's row: text); ``now_us`` is the
    time of ingest (epoch microseconds); ``appid``: the ingest key's app, when one is required.
    """
    if not isinstance(record, dict):
        raise ProfileError(Reject.NOT_OBJECT.text())
    text: dict[str, str | None] = {}
    for field in PROFILE_FIELDS:
        value = record.get(field)
        kind = _JSON_TYPES.get(type(value))
        if kind:
            raise ProfileError(Reject.WRONG_TYPE.text(field=field, kind=kind))
        raw = None if value is None else str(value)
        text[field] = raw if raw is None or raw.strip() else None
    app = (text["appid"] or "").strip()
    if not app:
        raise ProfileError(Reject.APPID_MISSING.text())
    for field in PROFILE_FIELDS:
        value = text[field]
        if value is not None and len(value) > MAX_FIELD_CHARS:
            raise ProfileError(Reject.TOO_LONG.text(field=field))
    problem = appid_problem(app)
    if problem:
        raise ProfileError(problem.text())
    openid = (text["openid"] or "").strip()
    if not openid:
        raise ProfileError(Reject.OPENID_MISSING.text())
    updated = text["updated_at"]
    if updated is None:
        updated_us = now_us
    else:
        try:
            updated_us = parse_time(record["updated_at"])
        except ValueError:
            raise ProfileError(ProfileReject.UPDATED_AT_INVALID.text(updated)) from None
        if not _US_FIRST <= updated_us < _US_END:
            raise ProfileError(ProfileReject.UPDATED_AT_RANGE.text(updated))
        if updated_us > now_us + UPDATED_AT_SKEW_US:
            raise ProfileError(ProfileReject.UPDATED_AT_FUTURE.text(updated))
    today = _day_of_us(now_us)
    birth, birth_raw = _birth(text["birth_date"], text["birth_year"], today)
    if appid is not None and app != appid:
        raise ProfileError(Reject.APPID_NOT_TOKENS.text())
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
            raise ProfileError(ProfileReject.BIRTH_YEAR_INVALID.text(year_raw))
        year = int(year_text)
    if date_raw is not None:
        match = _DATE_RE.fullmatch(_strip_point_zero(date_raw.strip()))
        try:
            if match is None:
                raise ValueError(date_raw)
            birth = dt.date(*(int(g) for g in match.groups()))
        except ValueError:
            raise ProfileError(ProfileReject.BIRTH_DATE_INVALID.text(date_raw)) from None
    elif year is not None:
        birth = dt.date(year, *BIRTH_YEAR_DAY)
        if year == today.year:  # born this year: not after today
            birth = min(birth, today)
    else:
        return None, None
    if birth > today:
        raise ProfileError(ProfileReject.BIRTH_FUTURE.text(raw))
    if birth < _years_before(today, MAX_AGE_YEARS):
        raise ProfileError(ProfileReject.BIRTH_TOO_OLD.text(raw))
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
_US_FIRST: Final = -8 * 3600 * 1_000_000  # 1970-01-01 00:00 Asia/Shanghai
_US_END: Final = int((dt.datetime(9999, 12, 31, 16, tzinfo=dt.UTC) - _EPOCH).total_seconds()) * (
    1_000_000
)


@functools.lru_cache(maxsize=64)  # one ingest time per batch: computed once
def _day_of_us(us: int) -> dt.date:
    return (_EPOCH + dt.timedelta(microseconds=us)).astimezone(TZ).date()


def now_us() -> int:
    """The current time in epoch microseconds (the ``updated_at`` of a record without one)."""
    return int((dt.datetime.now(dt.UTC) - _EPOCH) / dt.timedelta(microseconds=1))
