"""docs/clients.md: its FastAPI backend and its Node sender run against the real server."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from tests.client.faults import B, EventsServer

DOC = (Path(__file__).parents[2] / "docs" / "clients.md").read_text("utf-8")
NODE = shutil.which("node")


def block(lang: str, name: str) -> str:
    """The fenced block whose first line is ``# example: <name>`` (``//`` in JS)."""
    mark = "#" if lang == "python" else "//"
    match = re.search(rf"```{lang}\n({mark} example: {re.escape(name)}\b.*?)```", DOC, re.S)
    assert match, name
    return match.group(1)


def test_the_fastapi_backend(events_server: EventsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"BASE": events_server.url, "APPID": B, "INGEST_KEY": events_server.key}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    ns: dict[str, Any] = {"__name__": "clients_doc"}
    exec(compile(block("python", "fastapi"), "docs/clients.md: fastapi", "exec"), ns)
    ns["SESSIONS"].update({"s1": "o1", "s2": "o2"})

    async def run() -> list[Any]:
        async with LifespanManager(ns["app"]) as manager:
            transport = httpx.ASGITransport(app=manager.app, client=("203.0.113.9", 50000))
            async with httpx.AsyncClient(transport=transport, base_url="http://backend") as c:
                return [(await c.post("/visit", json=body, headers={
                    "Authorization": f"Bearer {s}", "User-Agent": "Mozilla/5.0 MicroMessenger/8.0.47"
                })).json() for s, body in [("s1", {"platform": "ios", "model": "iPhone 13<iPhone14,5>"}),
                                           ("s2", {"platform": "android", "brand": "Xiaomi"}),
                                           ("s1", {})]]  # fmt: skip

    assert asyncio.run(run()) == [{"ok": True}] * 3
    assert events_server.stored() == 3  # sent when the lifespan ended


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_the_node_sender(events_server: EventsServer, tmp_path: Path) -> None:
    (tmp_path / "portrait-sender.js").write_text(block("js", "node sender"), "utf-8")
    (tmp_path / "drive.js").write_text("""
const { PortraitSender } = require("./portrait-sender");
(async () => {
  const failed = [];
  const s = new PortraitSender({ baseUrl: process.env.BASE, appid: process.env.APPID,
    ingestKey: process.env.INGEST_KEY, batchSize: 1000, maxIntervalMs: 60000,
    onError: (events, err) => failed.push(err.message) });
  const answers = [], bodies = [];
  const post = s.post.bind(s);
  s.post = async (batch) => { const a = await post(batch); answers.push(a); return a; };
  for (let i = 0; i < 2500; i++)
    s.add({ openid: `u${i % 250}`, ts: `2024-06-10T08:00:${String(i % 60).padStart(2, "0")}+08:00`,
            platform: "ios", model: "iPhone 13<iPhone14,5>" });
  await s.flush();
  console.log(JSON.stringify({ answers, failed }));
})();
""")
    events_server.spoiler.faults.append(503)  # the first batch is stored, then answered 503
    env = {"BASE": events_server.url, "APPID": B, "INGEST_KEY": events_server.key}
    out = subprocess.run([NODE, "drive.js"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    ok = {"errcode": 0, "errmsg": "ok", "rejected": []}
    assert json.loads(out.stdout) == {
        "answers": [{**ok, "accepted": 1000}, {**ok, "accepted": 1000}, {**ok, "accepted": 500}],
        "failed": [],
    }
    assert events_server.spoiler.faults == []
    assert events_server.stored() == 2500  # the first batch went twice, and counts once
