"""Load figures of the running server, against 127.0.0.1 only, bounded in count and time.

    .venv/bin/python bench/serve_load.py [--seconds 10] [--users 20000]

Starts `userportrait serve` in a subprocess on a fresh data directory with generated data,
then measures: live ingestion (POST /v1/events, batches of 1,000) events/s and p99
acknowledgement latency; datacube portrait requests/s and p50/p99 for a cached window and
for uncached windows; and the trivial /healthz route as the bare-FastAPI baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

A = "wx0000000000000001"
SECRET = "bench-secret-1"


def start_server(data: Path) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "USERPORTRAIT_WECHAT_LIMITS": "false"}
    p = subprocess.Popen(
        [sys.executable, "-m", "userportrait", "serve", "--data-dir", str(data), "--port", "0"],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert p.stderr is not None
    for line in p.stderr:
        m = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", line)
        if m:
            threading.Thread(target=p.stderr.read, daemon=True).start()
            return p, m.group(1)
    raise RuntimeError("server did not start")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000


async def load(
    url: str, make: Any, seconds: float, concurrency: int, max_requests: int
) -> tuple[int, list[float], float]:
    lat: list[float] = []
    count = 0
    stop = time.monotonic() + seconds

    async def worker(c: httpx.AsyncClient) -> None:
        nonlocal count
        while time.monotonic() < stop and count < max_requests:
            count += 1
            method, path, kwargs = make(count)
            t0 = time.perf_counter()
            res = await c.request(method, path, **kwargs)
            lat.append(time.perf_counter() - t0)
            assert res.status_code == 200, res.text[:200]

    t0 = time.monotonic()
    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        await asyncio.gather(*(worker(c) for _ in range(concurrency)))
    return count, lat, time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--users", type=int, default=20_000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="up-bench-"))
    data = tmp / "data"
    up = [sys.executable, "-m", "userportrait"]
    end = dt.date.today() - dt.timedelta(days=1)
    subprocess.run([*up, "generate", str(tmp / "e.parquet"), "--users", str(args.users), "-q",
                    "--apps", "1", "--end", end.strftime("%Y%m%d")], check=True)  # fmt: skip
    subprocess.run(
        [*up, "ingest", "-q", str(tmp / "e.parquet"), "--data-dir", str(data)], check=True
    )
    subprocess.run(
        [*up, "apps", "add", "--appid", A, "--secret", SECRET, "--data-dir", str(data)], check=True
    )
    proc, url = start_server(data)
    try:
        tok = httpx.get(
            f"{url}/cgi-bin/token",
            params={"grant_type": "client_credential", "appid": A, "secret": SECRET},
        ).json()["access_token"]
        rows = []
        n, lat, el = asyncio.run(
            load(url, lambda i: ("GET", "/healthz", {}), args.seconds, 16, 10**6)
        )
        rows.append(("GET /healthz (bare baseline)", n / el, pct(lat, 0.5), pct(lat, 0.99)))
        q = {"access_token": tok}
        body = {
            "begin_date": (end - dt.timedelta(days=29)).strftime("%Y%m%d"),
            "end_date": end.strftime("%Y%m%d"),
        }
        path = "/datacube/getweanalysisappiduserportrait"
        n, lat, el = asyncio.run(
            load(
                url, lambda i: ("POST", path, {"params": q, "json": body}), args.seconds, 16, 10**6
            )
        )
        rows.append(("datacube 30-day, cached", n / el, pct(lat, 0.5), pct(lat, 0.99)))

        def uncached(i: int) -> tuple[str, str, dict[str, Any]]:
            span = (1, 7, 30)[i % 3]
            e = end - dt.timedelta(days=i % 9)
            b = e - dt.timedelta(days=span - 1) - dt.timedelta(days=0)
            return (
                "POST",
                path,
                {
                    "params": q,
                    "json": {"begin_date": b.strftime("%Y%m%d"), "end_date": e.strftime("%Y%m%d")},
                },
            )

        n, lat, el = asyncio.run(load(url, uncached, args.seconds, 4, 27))
        rows.append(("datacube 1/7/30-day, uncached", n / el, pct(lat, 0.5), pct(lat, 0.99)))

        def batch(i: int) -> tuple[str, str, dict[str, Any]]:
            ts = "2024-06-10T10:00:00+08:00"
            return "POST", "/v1/events", {"params": q, "json": [
                {"appid": A, "openid": f"l{i}-{k}", "ts": ts, "province": "广东", "device": "iPhone 13"}
                for k in range(1000)]}  # fmt: skip

        n, lat, el = asyncio.run(load(url, batch, args.seconds, 8, 10**6))
        rows.append(
            (
                "POST /v1/events, 1,000/batch (events/s)",
                n * 1000 / el,
                pct(lat, 0.5),
                pct(lat, 0.99),
            )
        )
    finally:
        proc.terminate()
        proc.wait()
    print(f"{'figure':45} {'per s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for name, rate, p50, p99 in rows:
        print(f"{name:45} {rate:10.0f} {p50:8.1f} {p99:8.1f}")
    print(
        f"(users={args.users}, seconds={args.seconds}, {os.cpu_count()} cores; median of latencies)"
    )
    _ = statistics


if __name__ == "__main__":
    main()
