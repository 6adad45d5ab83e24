"""Wrong-secret flood against a real server (issue 16): guesses/s, RSS, /healthz, rightful caller.

    .venv/bin/python bench/secret_flood.py [--seconds 5] [--clients 60]

Starts ``userportrait serve`` in a subprocess on 127.0.0.1, port 0, with one app; the
rightful caller takes a token once. Then ``--clients`` parallel loops send
``/cgi-bin/token`` with wrong secrets for ``--seconds``, each from its own address
(``X-Forwarded-For``, which uvicorn trusts from 127.0.0.1), while the rightful caller asks for
a token and ``/healthz`` is polled, each every 0.25 s. Reports the guesses that reached a
secret check (answered 40125) per second, the other answers, the server's peak RSS
growth, and p50/max latency of /healthz and of the rightful caller. ``--control`` sends the
same flood with a wrong grant_type (answered at once, no secret checked), to tell the cost
of secret checks from the cost of the request volume itself.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

A = "wx00000000000000f1"
SECRET = "right-secret-0001"


def start_server(data: Path) -> tuple[subprocess.Popen[str], str]:
    p = subprocess.Popen(
        [sys.executable, "-m", "userportrait", "serve", "--data-dir", str(data), "--port", "0"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert p.stderr is not None
    for line in p.stderr:
        m = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", line)
        if m:
            threading.Thread(target=p.stderr.read, daemon=True).start()
            return p, m.group(1)
    raise RuntimeError("server did not start")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def main(seconds: float, clients: int, control: bool) -> None:
    tmp = Path(tempfile.mkdtemp())
    data = tmp / "data"
    subprocess.run([sys.executable, "-m", "userportrait", "apps", "add", "--appid", A,
                    "--secret", SECRET, "--data-dir", str(data)], check=True)  # fmt: skip
    server, url = start_server(data)
    params = {"grant_type": "client_credential", "appid": A}
    codes: collections.Counter[object] = collections.Counter()
    health: list[float] = []
    rightful: list[float] = []
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=httpx.Limits(
                max_connections=clients + 4)) as c:  # fmt: skip
            assert (await c.get("/cgi-bin/token", params={**params, "secret": SECRET})).json()[
                "access_token"
            ]
            base = peak = rss_kib(server.pid)
            stop = time.monotonic() + seconds

            async def attacker(i: int) -> None:
                n = 0
                while time.monotonic() < stop:
                    query = {"grant_type": "x"} if control else {**params, "secret": f"g{i}-{n}"}
                    res = await c.get(
                        "/cgi-bin/token", params=query,
                        headers={"X-Forwarded-For": f"203.0.113.{i}"},
                    )  # fmt: skip
                    codes[res.json().get("errcode")] += 1
                    n += 1

            async def probe(path: str, query: dict[str, str], out: list[float]) -> None:
                while time.monotonic() < stop:
                    t = time.perf_counter()
                    res = await c.get(path, params=query)
                    assert res.status_code == 200, res.text
                    out.append(time.perf_counter() - t)
                    await asyncio.sleep(0.25)

            async def memory() -> None:
                nonlocal peak
                while time.monotonic() < stop:
                    peak = max(peak, rss_kib(server.pid))
                    await asyncio.sleep(0.05)

            await asyncio.gather(
                *(attacker(i) for i in range(clients)), memory(),
                probe("/healthz", {}, health),
                probe("/cgi-bin/token", {**params, "secret": SECRET}, rightful),
            )  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=30)
    checked = codes.get(40125, 0)
    print(f"{clients} clients x {seconds:.0f} s: answers {dict(codes)}")
    print(f"secret checks that ran scrypt and failed: {checked} ({checked / seconds:.1f}/s)")
    print(f"server RSS: {base / 1024:.0f} MiB before, peak +{(peak - base) / 1024:.0f} MiB")
    for name, xs in (("/healthz", health), ("rightful /cgi-bin/token", rightful)):
        xs.sort()
        print(f"{name}: n={len(xs)} p50 {xs[len(xs) // 2] * 1000:.1f} ms, "
              f"max {xs[-1] * 1000:.1f} ms")  # fmt: skip


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--clients", type=int, default=60)
    ap.add_argument("--control", action="store_true",
                    help="Same flood of requests that check no secret (40002), for comparison.")  # fmt: skip
    a = ap.parse_args()
    asyncio.run(main(a.seconds, a.clients, a.control))
