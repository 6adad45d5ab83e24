"""``portrait/export.py``: CSV cells never start a spreadsheet formula."""

from __future__ import annotations


def test_csv_cell_follows_owasp() -> None:
    from userportrait.portrait.export import csv_cell

    for start in ("=", "+", "-", "@", "\t", "\r"):
        assert csv_cell(start + "1+1") == "'" + start + "1+1"
    assert [csv_cell(v) for v in ("深圳", "iPhone 15", "'quoted", "", 7, -3)] == [
        "深圳", "iPhone 15", "'quoted", "", 7, -3,
    ]  # fmt: skip
