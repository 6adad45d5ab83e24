"""``backup`` and ``restore`` from the command line (tests/store/test_backup.py has the rest)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from tests.cli.conftest import portrait_json
from tests.conftest import load
from tests.fixtures import EVENTS
from userportrait.cli import cli
from userportrait.settings import Settings
from userportrait.store.lake import Lake


def test_backup_then_restore_answers_the_same(runner: CliRunner, tmp_path: Path) -> None:
    load(Lake(Settings(data_dir=tmp_path / "data")), EVENTS)
    before = portrait_json(runner)

    res = runner.invoke(cli, ["backup", str(tmp_path / "bk"), "-q"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith(f"backup {tmp_path / 'bk'}: ")
    assert "catalog version 1, writers paused " in res.output
    res = runner.invoke(cli, ["restore", str(tmp_path / "bk"), "--data-dir", str(tmp_path / "new")])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[-1].startswith("restored ")

    assert portrait_json(runner, "--data-dir", str(tmp_path / "new")) == before


def test_restore_into_a_non_empty_directory_is_refused(runner: CliRunner, tmp_path: Path) -> None:
    load(Lake(Settings(data_dir=tmp_path / "data")), EVENTS)
    assert runner.invoke(cli, ["backup", str(tmp_path / "bk"), "-q"]).exit_code == 0
    res = runner.invoke(
        cli, ["restore", str(tmp_path / "bk"), "--data-dir", str(tmp_path / "data")]
    )
    assert res.exit_code == 1
    assert f"error: {tmp_path / 'data'}: exists and is not empty" in " ".join(res.output.split())
