"""The npm third-party-platform client co-wxapp-open-api against the real server.

Its packages are installed into tests/js/node_modules by ``scripts/install --dev`` when npm
is on the machine; without them the test is skipped, saying why.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.api.test_component import COMP, COMP_SECRET, run
from tests.fixtures import WINDOW_0610_0612, A
from tests.server import live_server
from userportrait.settings import Settings

JS = Path(__file__).parent.parent / "js"
NODE = shutil.which("node")

needs_npm_client = pytest.mark.skipif(
    NODE is None or not (JS / "node_modules" / "co-wxapp-open-api").is_dir(),
    reason="node or tests/js/node_modules missing (scripts/install --dev installs them with npm)",
)


def run_js(script: str, env: dict[str, str]) -> dict[str, object]:
    assert NODE is not None
    out = subprocess.run(
        [NODE, str(JS / script)], env=env, capture_output=True, text=True, timeout=60, cwd=JS
    )
    assert out.stdout, out.stderr
    result: dict[str, object] = json.loads(out.stdout)
    return result


@needs_npm_client
def test_co_wxapp_open_api_component_portrait(api_settings: Settings) -> None:
    data = api_settings.data_dir
    run(data, "component", "add", "--component-appid", COMP, "--secret", COMP_SECRET)
    ticket = run(data, "component", "ticket", "--component-appid", COMP)
    env = {"COMPONENT_APPID": COMP, "COMPONENT_SECRET": COMP_SECRET, "TICKET": ticket,
           "BEGIN": "20240610", "END": "20240612"}  # fmt: skip
    with live_server(api_settings) as url:
        code = run(data, "component", "authorize", "--component-appid", COMP, "--appid", A,
                   "--permissions", "1,18")  # fmt: skip
        answer = run_js("component_portrait.js", {**env, "BASE": url, "CODE": code})
        assert answer.get("portrait") == WINDOW_0610_0612, answer
        assert answer["auth"]["authorization_info"]["authorizer_appid"] == A  # type: ignore[index]
        # without set 18 the client sees WeChat's errcode
        code = run(data, "component", "authorize", "--component-appid", COMP, "--appid", A,
                   "--permissions", "1")  # fmt: skip
        answer = run_js("component_portrait.js", {**env, "BASE": url, "CODE": code})
        assert answer["errcode"] == 61007
