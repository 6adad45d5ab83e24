"""The bulk pipeline (ingest/pipeline.py): edge cases of a batch's shape."""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path

import duckdb
import pytest

from tests.conftest import ingest_in_a_fresh_process, load
from userportrait.ingest import pipeline
from userportrait.ingest.pipeline import ingest_file
from userportrait.ingest.sources import open_source
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


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_a_crlf_or_bare_cr_line_in_an_lf_csv_costs_no_other_row(
    lake: Lake, tmp_path: Path, suffix: str
) -> None:
    """DuckDB's strict reader refused the whole file at one odd line end ("CSV Parser state
    machine reached an invalid state"; issue 24, hole 9): a CRLF counts as one line end,
    a bare CR as one too (as Spark's text reader reads them), and every row is read."""
    lines = [
        b"appid,openid,ts,gender\n",
        b"wx0000000000000001,o1,2024-06-10T08:00:00+08:00,1\n",
        b"wx0000000000000001,o2,2024-06-10T08:00:00+08:00,2\r\n",  # CRLF
        b"wx0000000000000001,o3,2024-06-10T08:00:00+08:00,1\r",  # bare CR
        b"wx0000000000000001,o4,2024-06-10T08:00:00+08:00,1\n",
        b"wx0000000000000001,o5,yesterday,1\n",  # rejected, on its own line
        b"wx0000000000000001,o6,2024-06-10T08:00:00+08:00,2\n",
    ]
    src = tmp_path / f"mixed{suffix}"
    body = b"".join(lines)
    src.write_bytes(gzip.compress(body) if suffix.endswith(".gz") else body)
    copies = set(Path(tempfile.gettempdir()).glob("userportrait-*.csv"))
    report = ingest_file(lake, src)
    assert (report.accepted, report.rejected) == (5, 1)
    assert [(r.file, r.line, r.reason) for r in report.rejects] == [
        (str(src), 6, "ts is not a timestamp: yesterday")
    ]
    assert report.rejects_file is not None
    assert Path(report.rejects_file).parent == lake.rejects_dir
    rows = duckdb.sql(
        f"SELECT openid, gender_id FROM read_parquet('{lake.events_dir}/**/*.parquet') "
        "ORDER BY openid"
    ).fetchall()
    assert rows == [("o1", 1), ("o2", 2), ("o3", 1), ("o4", 1), ("o6", 2)]
    assert set(Path(tempfile.gettempdir()).glob("userportrait-*.csv")) == copies  # removed


@pytest.mark.parametrize(
    ("suffix", "limit", "kind"),
    [
        (".ndjson", None, "table"),
        (".ndjson", 10, "view"),
        (".ndjson.gz", None, "view"),
        (".parquet", None, "view"),
    ],
)
def test_a_small_text_source_is_parsed_once_into_a_table(
    lake: Lake,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    suffix: str,
    limit: int | None,
    kind: str,
) -> None:
    """A batch reads its rows five times; a live WAL segment (NDJSON) re-parsed each time
    was most of a flush's time (issue 28). Text up to ``PARSE_ONCE_BYTES`` becomes a
    temporary table; bigger or gzipped text (its size unknown) and Parquet (columnar,
    nothing to parse) stay a view."""
    if limit is not None:
        monkeypatch.setattr(pipeline, "PARSE_ONCE_BYTES", limit)
    ndjson = tmp_path / "e.ndjson"
    ndjson.write_text(
        "".join(
            json.dumps({"appid": "wx0000000000000001", "openid": f"o{i}", "ts": "2024-06-10"})
            + "\n"
            for i in range(3)
        )
    )
    src = ndjson
    if suffix == ".ndjson.gz":
        src = tmp_path / "e.ndjson.gz"
        src.write_bytes(gzip.compress(ndjson.read_bytes()))
    if suffix == ".parquet":
        src = tmp_path / "e.parquet"
        duckdb.sql(f"COPY (SELECT * FROM read_json('{ndjson}')) TO '{src}'")
    con = lake.connect()
    try:
        source, select = open_source(con, src)
        pipeline._check_rows(con, source, select, {})
        tables = con.execute("SELECT table_name FROM duckdb_tables() WHERE temporary").fetchall()
        views = con.execute("SELECT view_name FROM duckdb_views() WHERE temporary").fetchall()
    finally:
        con.close()
    assert ("src" in [t[0] for t in tables], "src" in [v[0] for v in views]) == (
        kind == "table",
        kind == "view",
    )
    assert ingest_file(lake, src).accepted == 3
