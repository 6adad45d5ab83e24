"""``userportrait ingest``: reports, rejects, bad files (README.md, docs/ingest.md)."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from tests.cli.conftest import portrait_json
from tests.conftest import write_ndjson
from tests.fixtures import EVENTS, WINDOW_0610_0612, A
from userportrait.cli import cli


def test_ingest_then_portrait_json(runner: CliRunner, tmp_path: Path) -> None:
    src = write_ndjson(tmp_path / "e.ndjson", EVENTS)
    res = runner.invoke(cli, ["ingest", "-q", str(src)])
    assert res.exit_code == 0, res.output
    assert f"{src}: 10 accepted, 0 rejected" in res.output
    assert portrait_json(runner) == WINDOW_0610_0612
    assert portrait_json(runner, "--engine", "reference") == WINDOW_0610_0612


def test_same_file_twice_changes_nothing(runner: CliRunner, tmp_path: Path) -> None:
    src = write_ndjson(tmp_path / "e.ndjson", EVENTS)
    assert runner.invoke(cli, ["ingest", "-q", str(src)]).exit_code == 0
    res = runner.invoke(cli, ["ingest", "-q", str(src)])
    assert res.exit_code == 0 and "already ingested" in res.output
    # a copy under another name is new data, but identical events change no answer
    copy = tmp_path / "copy.ndjson"
    copy.write_bytes(src.read_bytes() + b"\n")
    assert runner.invoke(cli, ["ingest", "-q", str(copy)]).exit_code == 0
    assert portrait_json(runner) == WINDOW_0610_0612


def test_csv_gzip_and_parquet_inputs(runner: CliRunner, tmp_path: Path) -> None:
    csv_path = tmp_path / "e.csv.gz"
    fields = ["appid", "openid", "ts", "province", "city", "gender", "platform", "device", "age"]
    lines = [",".join(fields)]
    for e in EVENTS[:5]:
        lines.append(",".join(str(e.get(f, "")) for f in fields))
    csv_path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    keys = ["appid", "openid", "ts", *fields[3:]]
    table = pa.Table.from_pylist(
        [
            {k: (str(e[k]) if k != "age" else e[k]) if k in e else None for k in keys}
            for e in EVENTS[5:]
        ]
    )
    pq.write_table(table, tmp_path / "e.parquet")
    res = runner.invoke(cli, ["ingest", "-q", str(csv_path), str(tmp_path / "e.parquet")])
    assert res.exit_code == 0, res.output
    assert "total: 10 accepted, 0 rejected" in res.output
    assert portrait_json(runner) == WINDOW_0610_0612


def test_bad_records_are_reported_and_kept(runner: CliRunner, tmp_path: Path) -> None:
    src = tmp_path / "bad.ndjson"
    good = {"appid": A, "openid": "g", "ts": "2024-06-10T10:00:00+08:00"}
    lines = [
        json.dumps(good),
        json.dumps({"appid": A, "ts": "2024-06-10T10:00:00+08:00"}),
        "{not json",
        json.dumps({"appid": A, "openid": "x", "ts": "yesterday"}),
        json.dumps({"appid": A, "openid": "y", "ts": "2024-06-10T10:00:00Z", "age": -3}),
        json.dumps({"appid": A, "openid": "z", "ts": "2024-06-10T10:00:00Z", "device": ["a"]}),
        json.dumps({"appid": "bad/appid", "openid": "w", "ts": "2024-06-10T10:00:00Z"}),
        "",
        json.dumps([1, 2]),
        json.dumps({**good, "openid": "g2"}),
    ]
    src.write_text("\n".join(lines) + "\n")
    res = runner.invoke(cli, ["ingest", "-q", str(src)])
    assert res.exit_code == 0, res.output
    assert f"{src}: 2 accepted, 7 rejected" in res.output
    for expected in [
        f"{src}:2: openid is missing",
        f"{src}:3: not valid JSON",
        f"{src}:4: ts is not a timestamp: yesterday",
        f"{src}:5: age is not a whole number of years in 0..150: -3",
        f"{src}:6: device has the wrong type (array)",
        f"{src}:7: appid is not a valid appid",
        f"{src}:9: not a JSON object",
    ]:
        assert expected in res.output
    rejects = list((tmp_path / "data" / "rejects").glob("*.ndjson"))
    assert len(rejects) == 1
    kept = [json.loads(line) for line in rejects[0].read_text().splitlines()]
    assert [k["line"] for k in kept] == [2, 3, 4, 5, 6, 7, 9]
    assert kept[0]["record"]["appid"] == A


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.ndjson", None, "no such file"),
        ("events.xlsx", b"x", "unknown format .xlsx"),
        (
            "cols.csv",
            b"appid,user,time\nwx1,u,2024-06-10\n",
            "missing required column(s) openid, ts",
        ),
        ("cols.parquet", "parquet", "missing required column(s) ts"),
    ],
)
def test_bad_files_fail_cleanly_and_leave_store(
    runner: CliRunner, tmp_path: Path, name: str, content: bytes | str | None, message: str
) -> None:
    good = write_ndjson(tmp_path / "good.ndjson", EVENTS)
    bad = tmp_path / name
    if content == "parquet":
        pq.write_table(pa.table({"appid": [A], "openid": ["u"]}), bad)
    elif isinstance(content, bytes):
        bad.write_bytes(content)
    res = runner.invoke(cli, ["ingest", "-q", str(good), str(bad)])
    assert res.exit_code == 1
    assert message in res.output
    assert len([line for line in res.output.splitlines() if line.strip()]) == 1
    # Nothing was committed: the store has no app's events.
    res = runner.invoke(cli, ["portrait", "--appid", A, "--begin", "20240610", "--end", "20240612"])
    assert res.exit_code == 1 and f"no events for {A}" in res.output, res.output


def test_parquet_rejects_counted_without_a_second_pass(runner: CliRunner, tmp_path: Path) -> None:
    """Typed Parquet: rejected = rows - accepted, and each reject still has row and reason."""
    ts = dt.datetime(2024, 6, 10, 2, tzinfo=dt.UTC)
    table = pa.table(
        {
            "appid": [A, A, None, A, A],
            "openid": ["p1", "", "p3", "p4", "p5"],
            "ts": pa.array([ts, ts, ts, None, ts], pa.timestamp("us", tz="UTC")),
            "age": pa.array([30, 31, 32, 33, 999], pa.int16()),
        }
    )
    pq.write_table(table, tmp_path / "typed.parquet")
    res = runner.invoke(cli, ["ingest", str(tmp_path / "typed.parquet")])
    assert res.exit_code == 0, res.output
    assert "1 accepted, 4 rejected" in res.output
    for expected in ("typed.parquet:2: openid is missing", "typed.parquet:3: appid is missing", "typed.parquet:4: ts is missing",
                     "typed.parquet:5: age is not a whole number of years in 0..150: 999"):  # fmt: skip
        assert expected in res.output
