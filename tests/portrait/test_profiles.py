"""Checking and normalising one profile record (``portrait/profiles.py``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from userportrait.ingest.records import parse_ts_us
from userportrait.portrait.profiles import (
    age_on,
    check_profile,
    profile_age_id,
)
from userportrait.portrait.rules import RecordError

A = "wxprof0000000001"
NOW = int(dt.datetime(2024, 3, 15, 4, tzinfo=dt.UTC).timestamp()) * 1_000_000  # 03-15 Shanghai


def check(**fields: Any) -> Any:
    return check_profile({"appid": A, "openid": "u", **fields}, NOW, parse_ts_us)


def test_fields_are_normalised_with_the_event_rules() -> None:
    p = check(gender="女", birth_date="1990-02-03", city="深圳", updated_at="2024-03-01")
    assert (p.gender_id, p.birth_date, p.province_id, p.city_id) == (
        2, dt.date(1990, 2, 3), 44, 4403,
    )  # fmt: skip
    assert (p.gender_raw, p.city_raw, p.province_raw, p.birth_raw) == (
        "女",
        "深圳",
        None,
        "1990-02-03",
    )
    assert p.updated_at_us == int(dt.datetime(2024, 2, 29, 16, tzinfo=dt.UTC).timestamp()) * 10**6
    assert check(updated_at=None).updated_at_us == NOW  # missing: the time of ingest
    # up to a day after the time of ingest (clock skew), not later (issue 24)
    assert check(updated_at="2024-03-16T12:00:00+08:00").updated_at_us == NOW + 86_400 * 10**6
    assert check(gender=0, province=" ").gender_id is None
    assert check(province=" ").province_id is None


@pytest.mark.parametrize(
    ("fields", "birth"),
    [
        ({"birth_date": "19900203"}, dt.date(1990, 2, 3)),
        ({"birth_date": 19900203}, dt.date(1990, 2, 3)),
        ({"birth_year": 1990}, dt.date(1990, 7, 1)),
        ({"birth_year": "1990"}, dt.date(1990, 7, 1)),
        ({"birth_year": 1990.0}, dt.date(1990, 7, 1)),
        ({"birth_year": 2024}, dt.date(2024, 3, 15)),  # this year: not after the ingest day
        ({"birth_date": "2000-01-01", "birth_year": 1980}, dt.date(2000, 1, 1)),
        ({"birth_date": "1904-03-15"}, dt.date(1904, 3, 15)),  # 120 years: still plausible
    ],
)
def test_birth_forms(fields: dict[str, Any], birth: dt.date) -> None:
    assert check(**fields).birth_date == birth


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"birth_date": "1990/02/03"}, "birth_date is not a date (YYYY-MM-DD or YYYYMMDD): 1990/02/03"),
        ({"birth_date": "1990-02-30"}, "birth_date is not a date (YYYY-MM-DD or YYYYMMDD): 1990-02-30"),
        ({"birth_year": "90"}, "birth_year is not a year (YYYY): 90"),
        ({"birth_year": 1990.5}, "birth_year is not a year (YYYY): 1990.5"),
        ({"birth_date": "2024-03-16"}, "birth date is after the day of ingest: 2024-03-16"),
        ({"birth_year": 2025}, "birth date is after the day of ingest: 2025"),
        ({"birth_date": "1904-03-14"}, "birth date is more than 120 years before the day of ingest: 1904-03-14"),
        ({"updated_at": "yesterday"}, "updated_at is not a timestamp: yesterday"),
        ({"updated_at": 1.5}, "updated_at is not a timestamp: 1.5"),
        ({"updated_at": "1969-12-31T00:00:00+08:00"}, "updated_at is outside the years 1970..9999 (Asia/Shanghai): 1969-12-31T00:00:00+08:00"),
        ({"updated_at": "9999-12-31T00:00:00+08:00"}, "updated_at is more than a day after the time of ingest: 9999-12-31T00:00:00+08:00"),
        ({"updated_at": "2024-03-16T12:00:01+08:00"}, "updated_at is more than a day after the time of ingest: 2024-03-16T12:00:01+08:00"),
        ({"gender": True}, "gender has the wrong type (boolean)"),
        ({"city": {"name": "x"}}, "city has the wrong type (object)"),
        ({"openid": " "}, "openid is missing"),
        ({"appid": "a/b"}, "appid is not a valid appid (letters, digits, _ . - only)"),
        ({"province": "x" * 257}, "province is longer than 256 characters"),
    ],
)  # fmt: skip
def test_rejects_name_the_field(fields: dict[str, Any], reason: str) -> None:
    with pytest.raises(RecordError) as err:
        check(**fields)
    assert str(err.value) == reason


def test_the_tokens_app_only() -> None:
    with pytest.raises(RecordError, match="appid does not match the ingest key's app"):
        check_profile({"appid": A, "openid": "u"}, NOW, parse_ts_us, "wxother")
    with pytest.raises(RecordError, match="not a JSON object"):
        check_profile([A], NOW, parse_ts_us)


def test_age_on_a_day() -> None:
    born = dt.date(2000, 7, 15)
    assert age_on(born, dt.date(2024, 7, 14)) == 23
    assert age_on(born, dt.date(2024, 7, 15)) == 24
    leap = dt.date(2004, 2, 29)
    assert age_on(leap, dt.date(2023, 2, 28)) == 18
    assert age_on(leap, dt.date(2023, 3, 1)) == 19
    assert profile_age_id(born, dt.date(2024, 7, 14)) == 2
    assert profile_age_id(born, dt.date(2000, 7, 14)) is None  # before the birth
    assert profile_age_id(born, dt.date(2000, 7, 15)) == 1  # age 0
    assert profile_age_id(None, dt.date(2024, 1, 1)) is None
