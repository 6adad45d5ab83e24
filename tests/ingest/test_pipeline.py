"""The bulk pipeline (ingest/pipeline.py): edge cases of a batch's shape."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ingest_in_a_fresh_process, load
from userportrait.store.lake import Lake


@pytest.mark.parametrize("ts", ["0000-06-01T00:00:00Z", "0000-01-01", "0001-01-01T00:00:00Z"])
def test_a_batch_of_one_day_before_year_1_is_rejected_not_a_crash(lake: Lake, ts: str) -> None:
    """A file whose every ts falls on one day DuckDB can hold and Python cannot (year 0):
    the one-partition fast path must not read that day as a date (found by hypothesis)."""
    report = load(lake, [{"appid": "wxa000000000000001", "openid": "o1", "ts": ts}])
    assert (report.accepted, report.rejected) == (0, 1)
    assert report.rejects[0].reason == f"ts is outside the years 1970..9999 (Asia/Shanghai): {ts}"


def test_a_fresh_ingest_of_a_csv_with_bad_rows_imports_no_pandas(tmp_path: Path) -> None:
    """The refused rows' reasons go into DuckDB as list parameters: a pyarrow table would
    import pandas (0.5 s of a fresh ``ingest`` process when it is installed)."""
    src = tmp_path / "bad.csv"
    src.write_text(
        "appid,openid,ts\n"
        "wx0000000000000001,o1,2024-06-10T08:00:00+08:00\n"
        "wx0000000000000001,o2,2024-06-10,extra\n"
        "\n"
        'wx0000000000000001,"o3"x,2024-06-10\n',
        encoding="utf-8",
    )
    assert ingest_in_a_fresh_process(src, tmp_path / "d") == (1, [3, 5], False)
