"""``userportrait serve --get``: one in-process request, through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from tests.conftest import load
from tests.fixtures import EVENTS, WINDOW_0610_0612, A
from userportrait.auth.store import AuthStore
from userportrait.cli import cli
from userportrait.store.lake import Lake


def run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return res.exit_code, res.output


def test_serve_get_smoke(tmp_path: Path) -> None:
    from userportrait.settings import Settings

    settings = Settings(data_dir=tmp_path / "data", duckdb_memory_limit_mb=512)
    load(Lake(settings), EVENTS)
    d = str(settings.data_dir)
    code, out = run("serve", "--data-dir", d, "--get", "/healthz")
    assert code == 0 and json.loads(out)["status"] == "ok"
    run("apps", "add", "--appid", A, "--secret", "smoke-secret", "--data-dir", d)
    token = AuthStore(settings.data_dir / "meta.sqlite").issue_token(A, "smoke-secret").token
    path = f"/v1/apps/{A}/portrait?begin=20240610&end=20240612&access_token={token}"
    code, out = run("serve", "--data-dir", d, "--get", path)
    assert code == 0 and json.loads(out) == WINDOW_0610_0612
    code, out = run("serve", "--data-dir", d, "--get", "/datacube/getweanalysisappiduserportrait")
    assert code == 1 and json.loads(out)["errcode"] == 43002


def test_a_service_error_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    """The group turns a ServiceError from any command into ``error: …`` and status 1;
    ``serve`` once let an unknown engine out as a traceback."""
    res = CliRunner().invoke(
        cli, ["serve", "--data-dir", str(tmp_path), "--engine", "nope", "--get", "/healthz"]
    )
    assert res.exit_code == 1
    assert res.output.startswith("error: unknown engine 'nope'; choose one of"), res.output
