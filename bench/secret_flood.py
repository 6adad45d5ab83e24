"""Wrong-secret flood of every secret-checking route against a real server (issues 16, 24).

    .venv/bin/python bench/secret_flood.py [--seconds 5] [--clients 60] [--route all] [--control]

For each route (``--route``; ``all`` runs each in turn) a fresh ``userportrait serve`` is
started in a subprocess on 127.0.0.1, port 0, over one temporary data directory holding an
app, the dashboard admin key and a third-party platform with its current ticket (set up with
the CLI). The server believes ``X-Forwarded-For`` from 127.0.0.1
(``USERPORTRAIT_TRUSTED_PROXIES``), so each of the ``--clients`` parallel flood loops sends
its wrong guesses for ``--seconds`` from its own address, while the rightful caller (the
TCP peer 127.0.0.1, which succeeded once before the flood) and ``/healthz`` are probed,
each every 0.25 s. The routes and their rightful caller:

=============== ============================================== ===============================
token           ``GET /cgi-bin/token``, wrong secrets           a correct token call
stable_token    ``POST /cgi-bin/stable_token``, wrong secrets   a correct stable_token call
signin-secret   ``POST /dashboard/signin`` {appid, secret}      a correct app sign-in
signin-admin    ``POST /dashboard/signin`` {admin_key}          a correct app sign-in
signin-code     ``POST /dashboard/signin`` {code}               a correct app sign-in
component-token ``POST …/api_component_token``, wrong tickets   a correct component token call
=============== ============================================== ===============================

Reports per route the guesses that reached a secret check (a wrong-secret answer: 40125,
40001, 40013, 61005, 61006) per second, those refused before it (45011), those turned away
busy (-1, HTTP 503), the server's peak RSS growth, and p50/max latency of /healthz and of the
rightful caller (with its failures). ``--control`` sends the same volume of requests that
check no secret (a wrong grant_type, or ``{}``: answered at once), to tell the cost of the
secret checks from the cost of the requests themselves.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

A = "wx00000000000000f1"
SECRET = "right-secret-0001"
ADMIN_KEY = "right-admin-key-0001"
COMP = "wx00000000000000c1"
COMP_SECRET = "right-comp-secret-0001"
ROUTES = ["token", "stable_token", "signin-secret", "signin-admin", "signin-code",
          "component-token"]  # fmt: skip
#: Answers of a guess that reached its secret (or ticket, or code) check and failed.
CHECKED = {40125, 40001, 40013, 61005, 61006}
#: The server imports this checkout's package, and believes X-Forwarded-For from 127.0.0.1.
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[1]), *filter(None, [os.environ.get("PYTHONPATH")])]
    ),
    "USERPORTRAIT_TRUSTED_PROXIES": "127.0.0.1",
}


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    params: dict[str, str] | None = None
    json: dict[str, str] | None = None


def guess(route: str, i: int, n: int, control: bool) -> Call:
    """Flood loop ``i``'s ``n``-th request."""
    wrong = f"g{i}-{n}"
    if route == "token":
        query = {"grant_type": "x"} if control else {
            "grant_type": "client_credential", "appid": A, "secret": wrong}  # fmt: skip
        return Call("GET", "/cgi-bin/token", params=query)
    if control:  # 41002 / 40002 at once: no secret is checked
        return Call("POST", rightful(route, "").path, json={})
    body = {
        "stable_token": {"grant_type": "client_credential", "appid": A, "secret": wrong},
        "signin-secret": {"appid": A, "secret": wrong},
        "signin-admin": {"admin_key": wrong},
        "signin-code": {"code": wrong},
        # The ticket is checked first: a guesser without it never reaches the secret.
        "component-token": {
            "component_appid": COMP,
            "component_appsecret": wrong,
            "component_verify_ticket": "ticket@@@" + wrong,
        },  # fmt: skip
    }[route]
    return Call("POST", rightful(route, "").path, json=body)


def rightful(route: str, ticket: str) -> Call:
    if route == "token":
        return Call("GET", "/cgi-bin/token", params={
            "grant_type": "client_credential", "appid": A, "secret": SECRET})  # fmt: skip
    if route == "stable_token":
        return Call("POST", "/cgi-bin/stable_token", json={
            "grant_type": "client_credential", "appid": A, "secret": SECRET})  # fmt: skip
    if route == "component-token":
        return Call("POST", "/cgi-bin/component/api_component_token", json={
            "component_appid": COMP, "component_appsecret": COMP_SECRET,
            "component_verify_ticket": ticket})  # fmt: skip
    return Call("POST", "/dashboard/signin", json={"appid": A, "secret": SECRET})


async def send(c: httpx.AsyncClient, call: Call, headers: dict[str, str] | None = None) -> Any:
    res = await c.request(call.method, call.path, params=call.params, json=call.json,
                          headers=headers)  # fmt: skip
    return res.status_code, res.json()


def cli(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "userportrait", *args], env=ENV, check=True,
                         capture_output=True, text=True)  # fmt: skip
    return out.stdout.strip()


def start_server(data: Path) -> tuple[subprocess.Popen[str], str]:
    p = subprocess.Popen(
        [sys.executable, "-m", "userportrait", "serve", "--data-dir", str(data), "--port", "0"],
        stderr=subprocess.PIPE, text=True, env=ENV,
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


@dataclass
class Result:
    route: str
    codes: collections.Counter[object]
    base_kib: int
    peak_kib: int
    health: list[float]
    rightful: list[float]
    rightful_failed: collections.Counter[object]


def ok(status: int, body: Any) -> bool:
    return status == 200 and body.get("errcode", 0) == 0


async def flood(
    data: Path, route: str, ticket: str, seconds: float, clients: int, control: bool
) -> Result:
    server, url = start_server(data)
    codes: collections.Counter[object] = collections.Counter()
    failed: collections.Counter[object] = collections.Counter()
    health: list[float] = []
    good: list[float] = []
    good_call = rightful(route, ticket)
    limits = httpx.Limits(max_connections=clients + 4)
    try:
        async with (
            httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as attack,
            httpx.AsyncClient(base_url=url, timeout=30) as probes,
        ):
            status, body = await send(probes, good_call)  # known good from now on
            assert ok(status, body), (route, body)
            base = peak = rss_kib(server.pid)
            stop = time.monotonic() + seconds

            async def attacker(i: int) -> None:
                n = 0
                headers = {"X-Forwarded-For": f"203.0.113.{i}"}
                while time.monotonic() < stop:
                    _, body = await send(attack, guess(route, i, n, control), headers)
                    codes[body.get("errcode")] += 1
                    n += 1

            async def probe(call: Call, out: list[float]) -> None:
                while time.monotonic() < stop:
                    t = time.perf_counter()
                    status, body = await send(probes, call)
                    out.append(time.perf_counter() - t)
                    if not ok(status, body):
                        failed[body.get("errcode")] += 1
                    await asyncio.sleep(0.25)

            async def memory() -> None:
                nonlocal peak
                while time.monotonic() < stop:
                    peak = max(peak, rss_kib(server.pid))
                    await asyncio.sleep(0.05)

            await asyncio.gather(
                *(attacker(i) for i in range(clients)), memory(),
                probe(Call("GET", "/healthz"), health), probe(good_call, good),
            )  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=30)
    return Result(route, codes, base, peak, health, good, failed)


def latency(xs: list[float]) -> str:
    xs = sorted(xs)
    return f"{xs[len(xs) // 2] * 1000:.0f} / {xs[-1] * 1000:.0f} ms" if xs else "—"


def report(r: Result, seconds: float, clients: int) -> str:
    checked = sum(n for code, n in r.codes.items() if code in CHECKED)
    refused, busy = r.codes.get(45011, 0), r.codes.get(-1, 0)
    other = {k: v for k, v in r.codes.items() if k not in CHECKED | {45011, -1}}
    print(f"[{r.route}] {clients} clients x {seconds:g} s: answers {dict(r.codes)}; "
          f"rightful failures {dict(r.rightful_failed)}", file=sys.stderr)  # fmt: skip
    fails = f", {sum(r.rightful_failed.values())} failed" if r.rightful_failed else ""
    return (
        f"| {r.route} | {checked} ({checked / seconds:.1f}/s) | {refused} ({refused / seconds:.0f}/s)"
        f" | {busy} | {', '.join(f'{n} × {k}' for k, n in other.items()) or '—'}"
        f" | {r.base_kib / 1024:.0f} → +{(r.peak_kib - r.base_kib) / 1024:.0f} MiB"
        f" | {latency(r.health)} | {latency(r.rightful)} (n={len(r.rightful)}{fails}) |"
    )


async def main(seconds: float, clients: int, control: bool, routes: list[str]) -> None:
    data = Path(tempfile.mkdtemp()) / "data"
    d = ("--data-dir", str(data))
    cli("apps", "add", "--appid", A, "--secret", SECRET, *d)
    cli("dashboard", "admin-key", "--set", ADMIN_KEY, *d)
    cli("component", "add", "--component-appid", COMP, "--secret", COMP_SECRET, *d)
    ticket = cli("component", "ticket", "--component-appid", COMP, *d).splitlines()[-1]
    rows = []
    for route in routes:
        rows.append(report(await flood(data, route, ticket, seconds, clients, control),
                           seconds, clients))  # fmt: skip
    print(f"{'control: no secret checked, ' if control else ''}{clients} clients x {seconds:g} s")
    print("| route | reached a secret check | refused before it (45011) | busy (-1, 503) | other"
          " | server RSS, peak growth | /healthz p50 / max | rightful caller p50 / max |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--clients", type=int, default=60)
    ap.add_argument("--route", choices=[*ROUTES, "all"], default="all",
                    help="The route to flood (all: each in turn, a fresh server each).")  # fmt: skip
    ap.add_argument("--control", action="store_true",
                    help="Same flood of requests that check no secret, for comparison.")  # fmt: skip
    a = ap.parse_args()
    asyncio.run(main(a.seconds, a.clients, a.control, ROUTES if a.route == "all" else [a.route]))
