"""Issue 24, hole 8: hostile live-ingest bodies at once against a real server, /healthz meanwhile.

    .venv/bin/python bench/hostile_bodies.py [--bodies 3]

Starts ``userportrait serve`` on 127.0.0.1, port 0, with one app and its ingest key; sends
``--bodies`` 16 MiB bodies at once (a JSON array of elements nested 1,000 levels, the issue's
case) and polls ``/healthz`` every 0.1 s until all are answered. Before the parse left the
event loop, three such bodies made ``/healthz`` take 13 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from perf import server

APPID = "wx00000000000000a1"
DEEP = b"[" + b",".join([b"[" * 999 + b"]" * 999] * 8390) + b"]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bodies", type=int, default=3)
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp()) / "data"
    env = {**os.environ, "USERPORTRAIT_DATA_DIR": str(data)}

    def cli(*argv: str) -> str:
        command = [sys.executable, "-m", "userportrait", *argv]
        return subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout

    cli("apps", "add", "--appid", APPID, "--secret", "secret-secret-1")
    key = cli("apps", "ingest-key", "--appid", APPID).splitlines()[-1]
    answers: list[tuple[float, int]] = []

    def post(url: str) -> None:
        t = time.perf_counter()
        res = httpx.post(f"{url}/v1/events", content=DEEP, timeout=120,
                         headers={"Authorization": f"Bearer {key}"})  # fmt: skip
        answers.append((time.perf_counter() - t, res.json()["errcode"]))

    with server(data, live=True) as (url, _):
        senders = [threading.Thread(target=post, args=(url,)) for _ in range(args.bodies)]
        for s in senders:
            s.start()
        health: list[float] = []
        while any(s.is_alive() for s in senders):
            t = time.perf_counter()
            httpx.get(f"{url}/healthz", timeout=60)
            health.append(time.perf_counter() - t)
            time.sleep(0.1)
    shown = ", ".join(f"{code} in {s:.2f} s" for s, code in sorted(answers))
    print(f"{args.bodies} bodies of {len(DEEP) >> 20} MiB: {shown}")
    print(
        f"/healthz meanwhile: n={len(health)} p50={statistics.median(health) * 1000:.0f} ms "
        f"max={max(health) * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
