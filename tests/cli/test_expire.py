"""``userportrait expire``: days dropped, first days kept, earlier windows refused."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from tests.cli.conftest import portrait_json
from tests.conftest import write_ndjson
from tests.fixtures import EVENTS, WINDOW_0610_0612, A
from userportrait.cli import cli


def test_expire_keeps_the_window_after_the_cut(runner: CliRunner, tmp_path: Path) -> None:
    src = write_ndjson(tmp_path / "e.ndjson", EVENTS)
    assert runner.invoke(cli, ["ingest", "-q", str(src)]).exit_code == 0

    res = runner.invoke(cli, ["expire", "--before", "20240610", "--appid", A])

    assert res.exit_code == 0, res.output
    # u1 (06-01) and u3 (06-09) go; both were first seen before the window and stay old.
    assert res.output == (
        f"{A}: 2 files dropped\n"
        "expired 2 files (2 events) before 20240610 of 1 apps; 2 users' first days kept\n"
    )
    for engine in ("incremental", "sql", "reference"):
        assert portrait_json(runner, "--engine", engine) == WINDOW_0610_0612
    assert not list((tmp_path / "data" / "events" / f"appid={A}").glob("day=2024-06-0*"))


def test_a_window_before_the_cut_is_refused(runner: CliRunner, tmp_path: Path) -> None:
    src = write_ndjson(tmp_path / "e.ndjson", EVENTS)
    assert runner.invoke(cli, ["ingest", "-q", str(src)]).exit_code == 0
    assert runner.invoke(cli, ["expire", "--before", "2024-06-10"]).exit_code == 0

    res = runner.invoke(cli, ["portrait", "--appid", A, "--begin", "20240609", "--end", "20240612"])

    assert res.exit_code == 1
    assert res.stderr == (
        "error: date range error: begin_date 20240609 is before the first kept day 20240610 "
        "(older events were expired)\n"
    )


def test_expire_wants_a_date(runner: CliRunner) -> None:
    res = runner.invoke(cli, ["expire", "--before", "2024-13-01"])
    assert res.exit_code == 2 and "--before" in res.output
