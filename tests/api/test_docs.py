"""docs/api.md: every errcode is in its tables, and its Python examples run against a real server."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.fixtures import A
from tests.server import SECRET, live_server
from tests.signing_client import AES_KEY, AES_SN, APP_KEY_SN, APP_PRIVATE_KEY_PEM, app_public_pem
from userportrait.cli import cli
from userportrait.errors import ServiceError, _all_subclasses
from userportrait.settings import Settings

DOC = (Path(__file__).parents[2] / "docs" / "api.md").read_text("utf-8")


def example(name: str) -> str:
    """The fenced Python block whose first line is ``# example: <name> …``."""
    match = re.search(rf"```python\n(# example: {re.escape(name)}\b.*?)```", DOC, re.S)
    assert match, name
    return match.group(1)


def test_every_errcode_is_documented() -> None:
    codes = {cls.errcode for cls in [ServiceError, *_all_subclasses(ServiceError)]}
    documented = {int(c) for c in re.findall(r"^\| (-?\d+) \|", DOC, re.M)}
    assert codes - documented == set()


def cli_line(data_dir: Path, *args: str) -> str:
    res = CliRunner().invoke(cli, [*args, "--data-dir", str(data_dir)])
    assert res.exit_code == 0, res.output
    return res.output


def run_example(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    exec(compile(example(name), f"docs/api.md: {name}", "exec"), {"__name__": "example"})
    assert capsys.readouterr().out == "20240610-20240612\n", name


def test_examples_run(
    api_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    data = api_settings.data_dir
    comp = "wxcomponent00000001"
    cli_line(data, "component", "add", "--component-appid", comp, "--secret", "component-secret")
    ticket = cli_line(data, "component", "ticket", "--component-appid", comp).splitlines()[-1]
    code = cli_line(data, "component", "authorize", "--component-appid", comp, "--appid", A,
                    "--permissions", "1,18").splitlines()[-1]  # fmt: skip
    env = {"COMPONENT_APPID": comp, "COMPONENT_SECRET": "component-secret", "TICKET": ticket,
           "CODE": code, "APPID": A, "SECRET": SECRET, "AES_KEY": AES_KEY, "AES_SN": AES_SN,
           "PRIVATE_KEY": str(tmp_path / "app_private.pem"),
           "PLATFORM_KEY": str(tmp_path / "platform_public.pem")}  # fmt: skip
    with live_server(api_settings) as url:
        monkeypatch.setenv("BASE", url)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        run_example("third-party platform", capsys)
        # turned on while the server runs: it rereads the keys
        (tmp_path / "app_public.pem").write_bytes(app_public_pem())
        (tmp_path / "app_private.pem").write_bytes(APP_PRIVATE_KEY_PEM)
        cli_line(data, "apps", "security", "--appid", A, "--aes-key", AES_KEY, "--aes-sn", AES_SN,
                 "--public-key", str(tmp_path / "app_public.pem"), "--public-key-sn", APP_KEY_SN)  # fmt: skip
        shown = cli_line(data, "apps", "security", "--appid", A, "--show-platform-key").splitlines()
        (tmp_path / "platform_public.pem").write_text("\n".join(shown[:-1]) + "\n")
        run_example("API-security mode", capsys)


def test_docs_can_authorize_every_route_that_takes_a_credential() -> None:
    """/docs "Try it out" needs each credential declared: an Authorize button fills it in."""
    from pathlib import Path

    from userportrait.app import create_app
    from userportrait.settings import Settings

    schema = create_app(Settings(data_dir=Path("/nonexistent"))).openapi()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["access_token"] == {**schemes["access_token"], "in": "query", "type": "apiKey"}
    assert schemes["ingest_key"]["scheme"] == "bearer"
    expected = {
        "/datacube/getweanalysisappiduserportrait": "access_token",
        "/wxa/cloud/analysis.getUserPortrait": "access_token",
        "/cgi-bin/component/api_create_preauthcode": "component_access_token",
        "/cgi-bin/component/api_query_auth": "component_access_token",
        "/cgi-bin/component/api_authorizer_token": "component_access_token",
        "/cgi-bin/component/api_get_authorizer_info": "component_access_token",
        "/v1/events": "ingest_key",
        "/v1/profiles": "ingest_key",
    }
    for path, scheme in expected.items():
        assert schema["paths"][path]["post"]["security"] == [{scheme: []}], path
    native = schema["paths"]["/v1/apps/{appid}/portrait"]["get"]["parameters"]
    assert {"access_token", "authorization"} <= {p["name"].lower() for p in native}
