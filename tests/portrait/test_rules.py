"""The record grammar of ``portrait/rules.py``: its constants agree with DuckDB's reading of
them, every reason reads the same in Python and SQL, and ``check_envelope`` trims as told."""

from __future__ import annotations

from typing import Any

import duckdb
import pytest

from userportrait.portrait import rules
from userportrait.portrait.rules import (
    FIELDS,
    LENGTH_CHECKED,
    PROFILE_FIELDS,
    RecordError,
    Reject,
    check_envelope,
)

A = "wx00000000000000a1"


def test_the_microsecond_range_is_the_instant_range() -> None:
    con = duckdb.connect()
    first, end = con.execute(
        f"SELECT epoch_us(TIMESTAMPTZ '{rules.TS_FIRST}'), epoch_us(TIMESTAMPTZ '{rules.TS_END}')"
    ).fetchall()[0]
    assert (rules.TS_FIRST_US, rules.TS_END_US) == (first, end)
    assert rules.ts_in_range(first) and not rules.ts_in_range(first - 1)
    assert rules.ts_in_range(end - 1) and not rules.ts_in_range(end)


@pytest.mark.parametrize(
    ("reason", "parts", "text"),
    [
        (Reject.BLANK_LINE, {}, "blank line"),
        (Reject.NOT_CLOSED, {}, "a quoted field is not closed"),
        (Reject.LINE_TOO_LONG, {}, "line is longer than 16777216 bytes"),
        (Reject.WRONG_WIDTH, {"fields": 6, "width": 4}, "row has 6 fields; the header has 4"),
        (Reject.TOO_DEEP, {}, "nested deeper than 2 levels (a record is an object of scalars)"),
        (Reject.TOO_LONG, {"field": "city"}, "city is longer than 256 characters"),
        (Reject.BIRTH_YEAR_INVALID, {"value": "9" * 50}, "birth_year is not a year (YYYY): " + "9" * 40),
    ],
)  # fmt: skip
def test_a_reason_reads_the_same_in_python_and_sql(
    reason: Reject, parts: dict[str, Any], text: str
) -> None:
    assert reason.text(**parts) == text
    exprs = {k: repr(str(v)) for k, v in parts.items()}
    assert duckdb.connect().execute(f"SELECT {reason.sql(**exprs)}").fetchall() == [(text,)]


def test_the_line_limit_is_read_when_a_reason_is_worded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rules, "MAX_LINE_BYTES", 1000)
    assert Reject.LINE_TOO_LONG.text() == "line is longer than 1000 bytes"
    assert Reject.LINE_TOO_LONG.sql() == "'line is longer than 1000 bytes'"


def _envelope_error(record: Any, trim: rules.Trim) -> str | None:
    try:
        check_envelope(record, PROFILE_FIELDS, PROFILE_FIELDS, trim)
    except RecordError as exc:
        return str(exc)
    return None


def test_the_envelope_checks_in_order() -> None:
    assert _envelope_error([A], "duckdb") == "not a JSON object"
    bad = {"appid": None, "openid": [1], "gender": True}  # openid comes first in the fields
    assert _envelope_error(bad, "duckdb") == "openid has the wrong type (array)"
    assert _envelope_error({"openid": "u"}, "python") == "appid is missing"
    long = {"appid": "a/b", "openid": "u", "city": "x" * 257}  # too long before invalid
    assert _envelope_error(long, "python") == "city is longer than 256 characters"
    assert _envelope_error({"appid": "a/b"}, "python") == Reject.APPID_INVALID.text()
    assert _envelope_error({"appid": A}, "python") == "openid is missing"


def test_the_two_trims() -> None:
    """``duckdb`` trims the Unicode space separators only and keeps a blank value;
    ``python`` trims every whitespace and drops a blank value (profiles)."""
    record = {"appid": f"\u3000{A} ", "openid": "u\t", "gender": " ", "city": " " * 300}
    events = check_envelope(record, FIELDS, LENGTH_CHECKED[:2], "duckdb")
    assert (events.appid, events.openid, events.text["gender"]) == (A, "u\t", " ")
    profile = {k: v for k, v in record.items() if k != "city"}
    profiles = check_envelope(profile, PROFILE_FIELDS, PROFILE_FIELDS, "python")
    assert (profiles.appid, profiles.openid, profiles.text["gender"]) == (A, "u", None)
    # A blank value's length counts for events (as in SQL), not for profiles.
    assert _envelope_error({**record, "appid": A}, "python") is None
    with pytest.raises(RecordError, match="^city is longer than 256 characters$"):
        check_envelope(record, FIELDS, LENGTH_CHECKED, "duckdb")
    tab = {"appid": A, "openid": "\t"}
    assert _envelope_error(tab, "python") == "openid is missing"
    assert check_envelope(tab, FIELDS, LENGTH_CHECKED, "duckdb").openid == "\t"
