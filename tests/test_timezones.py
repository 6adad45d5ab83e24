"""Asia/Shanghai day boundaries, through real ingest (SQL) and the Python rules alike."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.conftest import load
from userportrait.engine import get_engine
from userportrait.errors import InvalidDateRange
from userportrait.portrait import normalize
from userportrait.portrait.query import PortraitQuery, today_shanghai
from userportrait.portrait.request import make_query
from userportrait.store.lake import Lake

A = "wxtz"

CASES = [
    ("2024-06-09T15:59:59Z", "2024-06-09"),
    ("2024-06-09T16:00:00Z", "2024-06-10"),
    ("2024-06-09T23:59:59.999999+08:00", "2024-06-09"),
    ("2024-06-10T00:00:00+08:00", "2024-06-10"),
    ("2024-06-09 23:59:59", "2024-06-09"),  # naive: Shanghai wall time
    ("2024-06-09T16:00:00-00:00", "2024-06-10"),
    ("1717948799", "2024-06-09"),  # epoch s = 15:59:59Z
    ("1717948800000", "2024-06-10"),  # epoch ms = 16:00:00Z
    ("2024-12-31T16:00:00Z", "2025-01-01"),  # year boundary
]


@pytest.mark.parametrize(("ts", "day"), CASES)
def test_python_day(ts: str, day: str) -> None:
    assert normalize.day_of(normalize.parse_ts(ts)).isoformat() == day


def test_ingest_puts_events_on_shanghai_days(lake: Lake) -> None:
    load(lake, [{"appid": A, "openid": f"u{i}", "ts": ts} for i, (ts, _) in enumerate(CASES)])
    days = {f.day: f.rows for f in lake.files(A)}
    expected: dict[str, int] = {}
    for _, day in CASES:
        expected[day] = expected.get(day, 0) + 1
    assert days == expected
    eng = get_engine("duckdb", lake)
    body = eng.run_portrait(PortraitQuery(A, dt.date(2024, 6, 10), dt.date(2024, 6, 10)))
    assert sum(body.active.ids["genders"].values()) == expected["2024-06-10"]


def test_window_end_yesterday_in_shanghai() -> None:
    # 2024-06-10T17:00Z is already 06-11 01:00 in Shanghai: yesterday is 06-10.
    now = dt.datetime(2024, 6, 10, 17, tzinfo=dt.UTC)
    today = today_shanghai(now)
    assert today == dt.date(2024, 6, 11)
    make_query(A, dt.date(2024, 6, 10), dt.date(2024, 6, 10), wechat_limits=True, today=today)
    with pytest.raises(InvalidDateRange):
        make_query(A, dt.date(2024, 6, 11), dt.date(2024, 6, 11), wechat_limits=True, today=today)


def test_time_of_day_is_arithmetic_only_without_daylight_saving(lake: Lake) -> None:
    """The state's time of day (``sqltext.shanghai_time_of_day_sql``) equals the zone lookup on both
    sides of 1992: China kept daylight saving in 1986-1991, so days before 1992 (and their
    DST hours) take the lookup and later days the fixed +8 arithmetic."""
    from userportrait.sqltext import shanghai_time_of_day_sql

    con = lake.connect()
    try:
        rows = con.execute(
            "WITH t AS (SELECT ts, CAST(timezone('Asia/Shanghai', ts) AS DATE) AS day FROM "
            "(SELECT unnest([TIMESTAMPTZ '1988-07-01 00:30:00+09', "  # DST: +09 in Shanghai
            "TIMESTAMPTZ '1991-09-14 23:59:59+09', TIMESTAMPTZ '1991-12-31 23:59:59.5+08', "
            "TIMESTAMPTZ '1992-01-01 00:00:00+08', TIMESTAMPTZ '2024-06-09 15:59:59.999999Z', "
            "TIMESTAMPTZ '9999-12-31 15:00:00Z']) AS ts)) "
            f"SELECT {shanghai_time_of_day_sql('ts', 'day')}, "
            "epoch_us(ts) - epoch_us(CAST(day AS TIMESTAMPTZ)) FROM t"
        ).fetchall()
    finally:
        con.close()
    assert [fast for fast, _ in rows] == [slow for _, slow in rows]
    assert rows[0][0] == 30 * 60 * 1_000_000  # 00:30 on the DST clock
