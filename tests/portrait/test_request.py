"""Pure units: request parsing and WeChat limits."""

from __future__ import annotations

import datetime as dt

import pytest

from userportrait.errors import EmptyPostData, InvalidDate, InvalidDateRange, InvalidRequest
from userportrait.portrait.query import PortraitQuery
from userportrait.portrait.request import make_query, parse_body, parse_date
from userportrait.portrait.result import ref_date

D = dt.date


def test_dates_in_both_forms() -> None:
    assert parse_date("20170611", "begin_date") == D(2017, 6, 11)
    assert parse_date("2017-06-11", "begin_date") == D(2017, 6, 11)


@pytest.mark.parametrize("raw", ["2017611", "2017/06/11", "20171311", "20170230", "", 20170611])
def test_bad_dates_are_61500(raw: object) -> None:
    with pytest.raises(InvalidDate) as info:
        parse_date(raw, "begin_date")
    assert info.value.errcode == 61500


@pytest.mark.parametrize(
    "raw",
    [b'{"begin_date":"20170611","end_date":"20170617"}',
     b'{"begin_date": "20170611", "end_date": "20170617"}\n'],
)  # fmt: skip
def test_body_forms(raw: bytes) -> None:
    assert parse_body(raw) == (D(2017, 6, 11), D(2017, 6, 17))


def test_body_errors() -> None:
    with pytest.raises(EmptyPostData):
        parse_body(b"  ")
    for raw in (b"{", b"[]", b'{"begin_date":"20170611"}', b'{"begin_date":1,"end_date":2}'):
        with pytest.raises(InvalidRequest) as info:
            parse_body(raw)
        assert info.value.errcode == 47001
    assert parse_body(b'{"beginDate":"20170611","endDate":"20170611"}', camel=True)


def test_wechat_limits() -> None:
    today = D(2024, 6, 20)
    for span in (1, 7, 30):
        make_query(
            "a",
            D(2024, 6, 20) - dt.timedelta(days=span),
            D(2024, 6, 19),
            wechat_limits=True,
            today=today,
        )
    with pytest.raises(InvalidDateRange):
        make_query("a", D(2024, 6, 10), D(2024, 6, 19), wechat_limits=True, today=today)
    with pytest.raises(InvalidDateRange):
        make_query("a", D(2024, 6, 20), D(2024, 6, 20), wechat_limits=True, today=today)
    assert make_query("a", D(2024, 6, 1), D(2024, 6, 20), today=today).days == 20


@pytest.mark.parametrize(
    "text", ["２０２４０６１０", "٢٠٢٤٠٦١٠", "2024０610", "+2024061", "2024-0610", "202406-10"]
)
def test_dates_take_ascii_digits_only(text: str) -> None:
    with pytest.raises(InvalidDate):
        parse_date(text, "begin_date")


def test_years_below_1000_keep_four_digits() -> None:
    assert parse_date("00010101", "begin_date") == dt.date(1, 1, 1)
    one = PortraitQuery("wxa000000000000001", dt.date(1, 1, 1), dt.date(1, 1, 1))
    assert ref_date(one) == "00010101"
    assert ref_date(
        PortraitQuery("wxa000000000000001", dt.date(999, 12, 31), dt.date(2024, 6, 10))
    ) == ("09991231-20240610")
