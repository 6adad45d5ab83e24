"""Pure units: attribute normalisation, age buckets, timestamps (no database)."""

from __future__ import annotations

import datetime as dt

import pytest

from userportrait.portrait import normalize
from userportrait.portrait.dims import age_bucket


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", 1), ("2", 2), ("0", None), ("m", 1), ("F", 2), ("Male", 1), ("female", 2),
     ("男", 1), ("女", 2), ("1.0", 1), ("", None), ("  ", None), (None, None), ("x", None),
     ("3", None)],
)  # fmt: skip
def test_gender(raw: str | None, expected: int | None) -> None:
    assert normalize.normalize_gender(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("ios", 1), ("iOS", 1), ("iPhone", 1), ("iPad", 1), ("android", 2), ("Android", 2),
     ("ohos", 3), ("HarmonyOS", 3), ("windows", 4), ("mac", 5), ("macOS", 5),
     ("devtools", 6), ("PlayStation", 6), ("", None), (None, None)],
)  # fmt: skip
def test_platform(raw: str | None, expected: int | None) -> None:
    assert normalize.normalize_platform(raw) == expected


@pytest.mark.parametrize(
    ("age", "bucket"),
    [(0, 1), (17, 1), (18, 2), (24, 2), (25, 3), (29, 3), (30, 4), (39, 4), (40, 5), (49, 5),
     (50, 6), (150, 6)],
)  # fmt: skip
def test_age_buckets(age: int, bucket: int) -> None:
    assert age_bucket(age) == bucket


@pytest.mark.parametrize("raw", ["-1", "151", "2.5", "abc"])
def test_bad_age_names_the_problem(raw: str) -> None:
    with pytest.raises(ValueError, match="age"):
        normalize.parse_age(raw)


def test_age_forms() -> None:
    assert normalize.parse_age(" 30 ") == 30
    assert normalize.parse_age("30.0") == 30
    assert normalize.parse_age("") is None


UTC = dt.UTC


@pytest.mark.parametrize(
    ("raw", "utc"),
    [
        ("2024-06-09T15:59:59Z", dt.datetime(2024, 6, 9, 15, 59, 59, tzinfo=UTC)),
        ("2024-06-10T00:00:00+08:00", dt.datetime(2024, 6, 9, 16, tzinfo=UTC)),
        ("2024-06-10 00:00:00", dt.datetime(2024, 6, 9, 16, tzinfo=UTC)),  # naive = Shanghai
        (1718064000, dt.datetime(2024, 6, 11, tzinfo=UTC)),
        (1718064000000, dt.datetime(2024, 6, 11, tzinfo=UTC)),
        ("1718064000000", dt.datetime(2024, 6, 11, tzinfo=UTC)),
    ],
)
def test_parse_ts(raw: str | int, utc: dt.datetime) -> None:
    assert normalize.parse_ts(raw) == int(utc.timestamp() * 1000)


@pytest.mark.parametrize("raw", ["", "yesterday", "2024-13-01T00:00:00Z", True, 1.5])
def test_parse_ts_rejects(raw: object) -> None:
    with pytest.raises(ValueError, match="ts"):
        normalize.parse_ts(raw)  # type: ignore[arg-type]
