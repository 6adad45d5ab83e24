"""Live ingestion under load (issue 6): events/s, acknowledgement latency, visibility lag.

    .venv/bin/python bench/ingest_load.py [--seconds 10] [--users 20000] [--clients 8]

Generates events (one app, 40 days ending yesterday), ingests them into a temporary data
directory, then starts ``userportrait serve`` in a subprocess on 127.0.0.1, port 0 (the
default flush interval). An asyncio + httpx loop sends batches of 1,000 events stamped
*now* (what a mini-program backend sends) for ``--seconds`` and records each batch's
acknowledgement latency (every acknowledgement follows an fsync). Then it polls today's
portrait until every acknowledged event is counted and reports how long that took after
the last acknowledgement. Portrait serving figures are ``bench/serve_bench.py``'s.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx

A = "wx0000000000000001"
SECRET = "bench-secret-1"
BATCH = 1000


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


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000


def active_today(url: str, token: str, today: str) -> int:
    """Active users of today's window (every user has exactly one gender bucket)."""
    body = httpx.get(
        f"{url}/v1/apps/{A}/portrait",
        params={"begin": today, "end": today, "access_token": token},
        timeout=60,
    ).json()
    return sum(int(row["value"]) for row in body["visit_uv"]["genders"])


async def send(url: str, key: str, seconds: float, clients: int) -> tuple[int, list[float]]:
    latencies: list[float] = []
    sent = 0
    stop = time.monotonic() + seconds

    async def client(c: httpx.AsyncClient, w: int) -> None:
        nonlocal sent
        i = 0
        while time.monotonic() < stop:
            ts = dt.datetime.now(dt.UTC).isoformat()
            batch = [
                {"appid": A, "openid": f"live-{w}-{i}-{k}", "ts": ts, "province": "广东",
                 "city": "深圳", "gender": "female", "platform": "ios", "device": "iPhone 15"}
                for k in range(BATCH)
            ]  # fmt: skip
            t0 = time.perf_counter()
            res = await c.post("/v1/events", json=batch)
            latencies.append(time.perf_counter() - t0)
            assert res.status_code == 200 and res.json()["accepted"] == BATCH, res.text[:200]
            sent += BATCH
            i += 1

    writes = {"Authorization": f"Bearer {key}"}  # the ingest key: tokens only read
    async with httpx.AsyncClient(base_url=url, timeout=60, headers=writes) as c:
        await asyncio.gather(*(client(c, w) for w in range(clients)))
    return sent, latencies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10, help="how long to send [10]")
    ap.add_argument("--users", type=int, default=20_000, help="users in the pre-loaded store")
    ap.add_argument("--clients", type=int, default=8, help="concurrent senders [8]")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="up-ingest-bench-"))
    data = tmp / "data"
    up = [sys.executable, "-m", "userportrait"]
    today = dt.datetime.now(ZoneInfo("Asia/Shanghai")).date()
    end = (today - dt.timedelta(days=1)).strftime("%Y%m%d")
    subprocess.run([*up, "generate", str(tmp / "e.parquet"), "--users", str(args.users), "-q",
                    "--apps", "1", "--end", end], check=True)  # fmt: skip
    subprocess.run(
        [*up, "ingest", "-q", str(tmp / "e.parquet"), "--data-dir", str(data)], check=True
    )
    subprocess.run(
        [*up, "apps", "add", "--appid", A, "--secret", SECRET, "--data-dir", str(data)], check=True
    )
    key = subprocess.run(
        [*up, "apps", "ingest-key", "--appid", A, "--data-dir", str(data)],
        check=True, capture_output=True, text=True,
    ).stdout.splitlines()[-1]  # fmt: skip
    proc, url = start_server(data)
    try:
        token = httpx.get(
            f"{url}/cgi-bin/token",
            params={"grant_type": "client_credential", "appid": A, "secret": SECRET},
        ).json()["access_token"]
        day = today.strftime("%Y%m%d")
        before = active_today(url, token, day)
        t0 = time.monotonic()
        sent, lat = asyncio.run(send(url, key, args.seconds, args.clients))
        elapsed = time.monotonic() - t0
        last_ack = time.monotonic()
        while active_today(url, token, day) != before + sent:
            if time.monotonic() - last_ack > 120:
                raise SystemExit("acknowledged events did not become visible within 120 s")
            time.sleep(0.1)
        visible = time.monotonic() - last_ack
    finally:
        proc.terminate()
        proc.wait()
    print(f"{'figure':48} {'value':>12}")
    print(f"{'events acknowledged':48} {sent:12,}")
    print(f"{'events/s (batches of 1,000)':48} {sent / elapsed:12,.0f}")
    print(f"{'acknowledgement p50 ms':48} {pct(lat, 0.5):12.1f}")
    print(f"{'acknowledgement p99 ms':48} {pct(lat, 0.99):12.1f}")
    print(f"{'all visible in portraits, s after last ack':48} {visible:12.2f}")
    print(f"(users={args.users}, clients={args.clients}, seconds={args.seconds}, "
          f"{os.cpu_count()} cores)")  # fmt: skip


if __name__ == "__main__":
    main()
