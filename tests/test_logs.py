"""``USERPORTRAIT_LOG_FORMAT=json``: every line ``serve`` and the CLI log is one JSON object."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from userportrait.logs import JsonFormatter

KEYS = {"time", "level", "logger", "message"}
TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def _objects(text: str) -> list[dict[str, Any]]:
    lines = [line for line in text.splitlines() if line.strip()]
    objects = [json.loads(line) for line in lines]  # raises on a line that is not JSON
    for obj in objects:
        assert isinstance(obj, dict) and KEYS <= obj.keys(), obj
        assert re.fullmatch(TIME, obj["time"]), obj
    return objects


def test_a_record_with_an_exception_is_one_object() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "failed %s", ("a",), sys.exc_info()
        )
    record.rid = "r1"
    obj = json.loads(JsonFormatter().format(record))
    assert {k: obj[k] for k in ("level", "logger", "message", "rid")} == {
        "level": "ERROR", "logger": "x", "message": "failed a", "rid": "r1",
    }  # fmt: skip
    assert obj["exc"].startswith("Traceback") and obj["exc"].endswith("ValueError: boom")
    assert "\n" not in JsonFormatter().format(record)


def test_serve_logs_json_lines_only(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "USERPORTRAIT_DATA_DIR": str(tmp_path / "data"),
        "USERPORTRAIT_LOG_FORMAT": "json",
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    cmd = [sys.executable, "-m", "userportrait", "serve", "--port", "0"]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        seen: list[str] = []
        deadline = time.monotonic() + 30
        url = None
        while url is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            seen.append(line)
            found = re.search(r"running on (http://127\.0\.0\.1:\d+)", line)
            url = found.group(1) if found else None
        assert url, "".join(seen)
        assert httpx.get(f"{url}/healthz").status_code == 200
        body = httpx.post(f"{url}/datacube/getweanalysisappiduserportrait", json={}).json()
        assert body["errcode"] == 41001
    finally:
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=30)
    objects = _objects("".join(seen) + rest)
    assert {o["logger"] for o in objects} >= {"uvicorn.error", "userportrait.access"}
    access = [o for o in objects if o["logger"] == "userportrait.access"]
    assert [(o["method"], o["path"], o["status"], o["message"]) for o in access] == [
        ("GET", "/healthz", 200, "GET /healthz 200"),
        ("POST", "/datacube/getweanalysisappiduserportrait", 200,
         "POST /datacube/getweanalysisappiduserportrait 200"),
    ]  # fmt: skip
    refused = [o for o in objects if "errcode=41001" in o["message"]]
    assert [o["rid"] for o in refused] == [access[1]["rid"]]


def test_the_cli_logs_json_lines(tmp_path: Path) -> None:
    """A warning logged in a command, after its settings are made as every command makes them."""
    env = {**os.environ, "USERPORTRAIT_LOG_FORMAT": "json", "PYTHONPATH": os.pathsep.join(sys.path)}
    code = (
        "import logging, sys; from userportrait.cli.common import make_settings;"
        f"make_settings({str(tmp_path)!r}); logging.getLogger('userportrait.x').warning('w %s', 1)"
    )
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    [obj] = _objects(res.stderr)
    assert (obj["level"], obj["logger"], obj["message"]) == ("WARNING", "userportrait.x", "w 1")
