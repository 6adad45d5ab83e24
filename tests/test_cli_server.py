"""``userportrait serve --get`` and ``userportrait apps …`` through click's CliRunner."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import load
from tests.fixtures import EVENTS, WINDOW_0610_0612, A
from userportrait.auth.store import AuthStore
from userportrait.cli import cli
from userportrait.store.lake import Lake


def run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return res.exit_code, res.output


def test_apps_lifecycle(tmp_path: Path) -> None:
    d = str(tmp_path / "data")
    code, out = run("apps", "add", "--appid", A, "--secret", "given-secret", "--data-dir", d)
    assert code == 0 and "given-secret" not in out
    code, out = run("apps", "add", "--appid", "wxgenerated01", "--data-dir", d)
    secret = re.search(r"shown once\): (\S+)", out)
    assert code == 0 and secret and len(secret.group(1)) >= 32
    store = AuthStore(tmp_path / "data" / "meta.sqlite")
    assert store.issue_token("wxgenerated01", secret.group(1)).expires_in == 7200
    code, out = run("apps", "list", "--data-dir", d)
    assert code == 0 and A in out and "wxgenerated01" in out
    assert "given-secret" not in out and secret.group(1) not in out
    assert run("apps", "add", "--appid", A, "--secret", "x" * 12, "--data-dir", d)[0] == 1
    old = store.issue_token(A, "given-secret").token
    code, out = run("apps", "rotate-secret", "--appid", A, "--data-dir", d)
    new = re.search(r"shown once\): (\S+)", out)
    assert code == 0 and new
    assert store.issue_token(A, new.group(1))
    assert_rejected(store, old)
    assert run("apps", "remove", "--appid", A, "--data-dir", d)[0] == 0
    assert run("apps", "remove", "--appid", A, "--data-dir", d)[0] == 1
    assert A not in run("apps", "list", "--data-dir", d)[1]


def test_apps_ingest_key_prints_the_key_alone_on_its_last_line(tmp_path: Path) -> None:
    d = str(tmp_path / "data")
    run("apps", "add", "--appid", A, "--secret", "given-secret", "--data-dir", d)
    code, out = run("apps", "ingest-key", "--appid", A, "--data-dir", d)
    first = out.splitlines()[-1]
    assert code == 0 and re.fullmatch(r"upik_[A-Za-z0-9_-]{43}", first), out
    store = AuthStore(tmp_path / "data" / "meta.sqlite")
    assert store.appid_for_ingest_key(first) == A
    code, out = run("apps", "ingest-key", "--appid", A, "--data-dir", d)
    second = out.splitlines()[-1]
    assert code == 0 and second != first and store.appid_for_ingest_key(second) == A
    from userportrait.errors import InvalidCredential

    with pytest.raises(InvalidCredential):
        store.appid_for_ingest_key(first)  # the previous key is retired
    code, out = run("apps", "ingest-key", "--appid", "wxnobody", "--data-dir", d)
    assert code == 1 and "wxnobody is not registered" in out


def assert_rejected(store: AuthStore, token: str) -> None:
    from userportrait.errors import InvalidCredential

    try:
        store.appid_for(token)
    except InvalidCredential:
        return
    raise AssertionError("old token still accepted")


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
