"""Serving figures of the datacube endpoint next to a bare FastAPI route (issue 4).

    .venv/bin/python bench/serve_bench.py [--small] [--seconds S] [--concurrency C]

Generates events (one app, 40 days ending yesterday), ingests them into a temporary data
directory, registers an app, then starts two uvicorn servers in subprocesses on 127.0.0.1,
port 0: ``userportrait serve`` (WeChat limits off) and a minimal FastAPI app with one
trivial route. An asyncio + httpx load loop, bounded in request count and time, measures
requests/s and p50/p99 latency for: the bare route, a cached datacube window (the same
30-day window again and again) and uncached datacube windows (a different begin/end pair
each request, so every request runs the engine). Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

SECRET = "bench-secret-1"
PATH = "/datacube/getweanalysisappiduserportrait"
Request = tuple[str, str, dict[str, Any]]


def bare_server() -> None:
    """The baseline: FastAPI with one trivial JSON route, under uvicorn on port 0."""
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"status": "ok"}

    uvicorn.run(app, host="127.0.0.1", port=0, log_level="info", access_log=False)


def start(argv: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    p = subprocess.Popen(argv, env={**os.environ, **env}, stderr=subprocess.PIPE, text=True)
    assert p.stderr is not None
    for line in p.stderr:
        m = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", line)
        if m:  # keep draining stderr (access log) so the server never blocks on it
            threading.Thread(target=p.stderr.read, daemon=True).start()
            return p, m.group(1)
    raise RuntimeError(f"{argv} did not start")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000


async def load(
    url: str, make: Callable[[int], Request], seconds: float, concurrency: int, limit: int
) -> tuple[int, list[float], float]:
    lat: list[float] = []
    n = 0
    stop = time.monotonic() + seconds

    async def worker(c: httpx.AsyncClient) -> None:
        nonlocal n
        while time.monotonic() < stop and n < limit:
            n += 1
            method, path, kwargs = make(n)
            t0 = time.perf_counter()
            res = await c.request(method, path, **kwargs)
            lat.append(time.perf_counter() - t0)
            if res.status_code != 200 or '"errcode"' in res.text[:12]:
                raise RuntimeError(res.text[:200])

    t0 = time.monotonic()
    async with httpx.AsyncClient(base_url=url, timeout=60) as c:
        await asyncio.gather(*(worker(c) for _ in range(concurrency)))
    return n, lat, time.monotonic() - t0


def prepare(data: Path, users: int, end: dt.date) -> str:
    from userportrait.auth.store import AuthStore
    from userportrait.ingest.pipeline import ingest_file
    from userportrait.settings import Settings
    from userportrait.store.lake import Lake
    from userportrait.synthetic.generate import GeneratorConfig, write_events

    cfg = GeneratorConfig(users=users, days=40, end=end, apps=1)
    events = data.parent / "events.parquet"
    count = write_events(events, cfg)
    t0 = time.perf_counter()
    ingest_file(Lake(Settings(data_dir=data)), events)
    print(f"{count:,} events, {users:,} users, ingested in {time.perf_counter() - t0:.1f} s")
    AuthStore(data / "meta.sqlite").add_app(cfg.appids[0], SECRET)
    return cfg.appids[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="small data and short runs")
    ap.add_argument("--seconds", type=float, default=None, help="time bound per scenario")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--bare-server", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.bare_server:
        bare_server()
        return
    users = 5_000 if args.small else 50_000
    seconds = args.seconds or (5.0 if args.small else 15.0)
    limit = 5_000 if args.small else 50_000
    from userportrait.portrait.query import today_shanghai

    end = today_shanghai() - dt.timedelta(days=1)
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        data = Path(tmp) / "data"
        appid = prepare(data, users, end)
        app_proc, app_url = start(
            [sys.executable, "-m", "userportrait", "serve", "--data-dir", str(data), "--port", "0"],
            {"USERPORTRAIT_WECHAT_LIMITS": "false"},
        )
        bare_proc, bare_url = start([sys.executable, __file__, "--bare-server"], {})
        try:
            token = httpx.get(
                app_url + "/cgi-bin/token",
                params={"grant_type": "client_credential", "appid": appid, "secret": SECRET},
            ).json()["access_token"]
            tok = {"access_token": token}
            b30 = end - dt.timedelta(days=29)
            cached_body = {"begin_date": f"{b30:%Y%m%d}", "end_date": f"{end:%Y%m%d}"}
            days = [end - dt.timedelta(days=i) for i in range(40)]
            pairs = itertools.cycle(
                [(b, e) for b, e in itertools.combinations_with_replacement(sorted(days), 2)
                 if (e - b).days not in (0, 6, 29)]  # not a precomputed 1/7/30-day window
            )  # fmt: skip

            def uncached(_: int) -> Request:
                b, e = next(pairs)
                return "POST", PATH, {"params": tok,
                                      "json": {"begin_date": f"{b:%Y%m%d}", "end_date": f"{e:%Y%m%d}"}}  # fmt: skip

            httpx.post(app_url + PATH, params=tok, json=cached_body, timeout=120)  # warm
            scenarios: list[tuple[str, str, Callable[[int], Request], int]] = [
                ("bare FastAPI GET /ping (separate app)", bare_url,
                 lambda _: ("GET", "/ping", {}), args.concurrency),
                ("userportrait GET /healthz", app_url,
                 lambda _: ("GET", "/healthz", {}), args.concurrency),
                ("datacube 30-day window, cached", app_url,
                 lambda _: ("POST", PATH, {"params": tok, "json": cached_body}), args.concurrency),
                ("datacube any window, uncached", app_url, uncached, 4),
            ]  # fmt: skip
            rows = []
            for name, url, make, conc in scenarios:
                n, lat, took = asyncio.run(load(url, make, seconds, conc, limit))
                rows.append((name, conc, n, n / took, pct(lat, 0.5), pct(lat, 0.99)))
        finally:
            for p in (app_proc, bare_proc):
                p.terminate()
                p.wait(timeout=30)
    print(f"\n{platform.node()} · {os.cpu_count()} CPUs · Python {platform.python_version()} · "
          f"{dt.date.today()} · {seconds:.0f} s or {limit:,} requests per scenario\n")  # fmt: skip
    print("| scenario | clients | requests | req/s | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, conc, n, rps, p50, p99 in rows:
        print(f"| {name} | {conc} | {n:,} | {rps:,.0f} | {p50:.1f} | {p99:.1f} |")


if __name__ == "__main__":
    main()
