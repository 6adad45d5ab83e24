"""The bulk pipeline (ingest/pipeline.py): edge cases of a batch's shape."""

from __future__ import annotations

import pytest

from tests.conftest import load
from userportrait.store.lake import Lake


@pytest.mark.parametrize("ts", ["0000-06-01T00:00:00Z", "0000-01-01", "0001-01-01T00:00:00Z"])
def test_a_batch_of_one_day_before_year_1_is_rejected_not_a_crash(lake: Lake, ts: str) -> None:
    """A file whose every ts falls on one day DuckDB can hold and Python cannot (year 0):
    the one-partition fast path must not read that day as a date (found by hypothesis)."""
    report = load(lake, [{"appid": "wxa000000000000001", "openid": "o1", "ts": ts}])
    assert (report.accepted, report.rejected) == (0, 1)
    assert report.rejects[0].reason == f"ts is outside the years 1970..9999 (Asia/Shanghai): {ts}"
