"""Issue 28: how time and memory grow with the users (1 M, 3 M, 10 M, 30 M; 40 days).

    .venv/bin/python bench/growth.py --users 1000000 3000000   # measure, save, print
    .venv/bin/python bench/growth.py --table                    # the table of every saved size

Per size, each step in a fresh process (``perf.run_step``, so its time and peak RSS are its
own): bulk ingest of 40 days, one day added, live flushes of 1,000 events into the newest
(complete, so busiest) day, a fresh ``userportrait portrait`` process for windows of 1-366
days, the server's p50/p99 over random windows of 1-366 days, and the sizes: state bytes
per user, lake bytes per event. DuckDB decoding the input file is measured beside the
ingest, so that runs on a loaded machine compare by ratio. Each size's figures are saved
to bench/cache/growth-u<N>.json (measured once, printed with the rest); sizes not measured
are projected from the slope of the two largest measured ones, and said so.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import perf

SIZES = (1_000_000, 3_000_000, 10_000_000, 30_000_000)
#: Windows of the fresh CLI: WeChat's 1 and 30 days, an odd span, a year.
CLI_WINDOWS = ((1, perf.END), (30, perf.END), (23, perf.END - dt.timedelta(days=3)),
               (366, perf.END))  # fmt: skip


def saved(users: int) -> Path:
    return perf.CACHE / f"growth-u{users}.json"


#: Runs the CLI in this process and prints its peak RSS on the way out: a fork's
#: ru_maxrss starts from its parent's (this driver, which may have generated the input).
_CLI = (
    "import atexit, sys\n"
    "atexit.register(lambda: print(next(l for l in open('/proc/self/status') "
    "if l.startswith('VmHWM')), file=sys.stderr))\n"
    "from userportrait.cli import cli\n"
    "sys.argv = ['userportrait', *sys.argv[1:]]\n"
    "cli()\n"
)


def cli_run(data: Path, n: int, end: dt.date) -> tuple[float, float, float]:
    """(wall seconds, peak RSS MiB, CPU seconds) of a fresh ``userportrait portrait``
    process; its CPU time is what it costs when the cores are shared."""
    begin = end - dt.timedelta(days=n - 1)
    cmd = [sys.executable, "-c", _CLI, "portrait", "--data-dir", str(data),
           "--appid", perf.APPID, "--begin", f"{begin:%Y%m%d}", "--end", f"{end:%Y%m%d}"]  # fmt: skip
    t = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=perf.cli_env()
    )
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - t
    if status:
        raise SystemExit(f"portrait failed: {' '.join(cmd)}: {err}")
    hwm = int(err.strip().splitlines()[-1].split()[1]) / 1024
    return took, hwm, usage.ru_utime + usage.ru_stime


def measure_cli(users: int) -> None:
    """Measure a saved size's fresh CLI again (its data directory as the run left it)."""
    out = json.loads(saved(users).read_text())
    data = perf.CACHE / f"u{users}-data"
    cli_run(data, 30, perf.END)  # writes the .pyc files, as an install does
    cli = {f"{n}@{end}": sorted(cli_run(data, n, end) for _ in range(3))[1]
           for n, end in CLI_WINDOWS}  # fmt: skip
    out["cli"] = {k: {"s": s, "rss_mb": rss, "cpu_s": cpu} for k, (s, rss, cpu) in cli.items()}
    out["cli_load"] = os.getloadavg()[0]
    saved(users).write_text(json.dumps(out, indent=1))


def lake_bytes(data: Path) -> int:
    return sum(p.stat().st_size for p in (data / "events").rglob("*.parquet"))


def measure(users: int, requests: int) -> dict[str, Any]:
    t = time.perf_counter()
    base, extra = perf.inputs(users)
    generated = time.perf_counter() - t
    data = perf.CACHE / f"u{users}-data"
    print(f"growth: {users:,} users, data in {data}", file=sys.stderr)
    out: dict[str, Any] = {"users": users, "date": f"{dt.date.today()}",
                           "load_before": os.getloadavg()[0], "input_s": generated}  # fmt: skip
    steps = {"decode": perf.run_step("decode", base, data, repeat=3),
             "ingest": perf.run_step("ingest", base, data)}  # fmt: skip
    steps["add_day"] = perf.run_step("add_day", extra, data, repeat=3)
    steps["flush"] = perf.run_step("flush", base, data)
    http = perf.served(data, requests)
    cli_run(data, 30, perf.END)  # writes the .pyc files, as an install does
    cli = {f"{n}@{end}": sorted(cli_run(data, n, end) for _ in range(3))[1]
           for n, end in CLI_WINDOWS}  # fmt: skip
    out["steps"] = {k: {f: v[f] for f in ("s", "rss_mb", "cpu_s", "runs") if f in v}
                    for k, v in steps.items()}  # fmt: skip
    out["steps"]["flush"].update({f: steps["flush"][f] for f in ("p90", "max", "n")})
    out["events"] = steps["ingest"]["events"]
    out["served"] = {"p50": perf.pct(http["first"], 0.5), "p99": perf.pct(http["first"], 0.99),
                     "n": len(http["first"]), "rss_mb": http["rss_mb"]}  # fmt: skip
    out["cli"] = {k: {"s": s, "rss_mb": rss, "cpu_s": cpu} for k, (s, rss, cpu) in cli.items()}
    out["state"] = perf.state_bytes(data)
    out["lake_bytes"] = lake_bytes(data)
    out["load_after"] = os.getloadavg()[0]
    saved(users).write_text(json.dumps(out, indent=1))
    return out


def project(lo: dict[str, Any], hi: dict[str, Any], users: int) -> dict[str, Any]:
    """A size not measured, on paper: the figures that follow from the size (events, CPU
    seconds, peak RSS, bytes) on the line through the two largest measured sizes; the
    fresh CLI's, which do not depend on the size, the larger measured. Wall times follow
    the machine's load more than the size, so they are not projected."""

    def line(a: float, b: float) -> float:
        slope = (b - a) / (hi["users"] - lo["users"])
        return b + slope * (users - hi["users"])

    out: dict[str, Any] = json.loads(json.dumps(hi))
    out.update(users=users, projected=True, events=round(line(lo["events"], hi["events"])))
    for name, step in out["steps"].items():
        for f in ("cpu_s", "rss_mb"):
            step[f] = line(lo["steps"][name][f], hi["steps"][name][f])
    out["served"]["rss_mb"] = line(lo["served"]["rss_mb"], hi["served"]["rss_mb"])
    for k, v in out["cli"].items():  # reads one span file whatever the users: flat
        for f in ("rss_mb", "cpu_s"):
            v[f] = max(lo["cli"][k][f], hi["cli"][k][f])
    out["state"]["total"] = line(lo["state"]["total"], hi["state"]["total"])
    out["lake_bytes"] = line(lo["lake_bytes"], hi["lake_bytes"])
    return out


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one row per size; a projected one gives no wall times (see ``project``)."""
    lines = [
        f"{platform.node()}, {os.cpu_count()} cores shared with other engineers' jobs, "
        f"Python {platform.python_version()}; 40 days, one appid, 13 visits per user.",
        "",
        "| users | events | bulk ingest: wall, CPU (peak RSS) | ingest / decode: wall, CPU "
        "| ingest CPU µs / event | add a day: wall, CPU (RSS) | live flush of 1,000: median "
        "/ p90 wall, CPU per flush (RSS) | fresh CLI, slowest window: wall, CPU (RSS) | served "
        "p50 / p99, 1-366 days (server RSS) | state B / user | lake B / event | load |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        s, ev, guess = r["steps"], r["events"], bool(r.get("projected"))

        def wall(x: float, digits: int = 1, guess: bool = guess) -> str:
            return "—" if guess else f"{x:.{digits}f} s"

        ing, add, flush = s["ingest"], s["add_day"], s["flush"]
        cli = max(r["cli"].values(), key=lambda c: c["cpu_s"])
        cli_rss = max(c["rss_mb"] for c in r["cli"].values())
        ratio = "" if guess else (
            f"{ing['s'] / s['decode']['s']:.1f}, {ing['cpu_s'] / s['decode']['cpu_s']:.1f}"
        )  # fmt: skip
        load = "" if guess else f"{r['load_before']:.1f} → {r['load_after']:.1f}"
        flushes = "—" if guess else f"{flush['s']:.2f} / {flush['p90']:.2f} s"
        served = "—" if guess else f"{r['served']['p50']:.1f} / {r['served']['p99']:.1f} ms"
        lines.append(
            f"| {r['users']:,}{' *(projected)*' if guess else ''} | {ev:,} "
            f"| {wall(ing['s'], digits=0)}, {ing['cpu_s']:.0f} s ({ing['rss_mb']:,.0f} MiB) "
            f"| {ratio} | {ing['cpu_s'] / ev * 1e6:.2f} "
            f"| {wall(add['s'])}, {add['cpu_s']:.1f} s ({add['rss_mb']:,.0f} MiB) "
            f"| {flushes}, {flush['cpu_s'] / (flush['n'] + 1):.2f} s ({flush['rss_mb']:,.0f} MiB) "
            f"| {wall(cli['s'], digits=2)}, {cli['cpu_s']:.2f} s ({cli_rss:,.0f} MiB) "
            f"| {served} ({r['served']['rss_mb']:,.0f} MiB) "
            f"| {r['state']['total'] / r['users']:.0f} | {r['lake_bytes'] / ev:.1f} | {load} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, nargs="*", default=[], help="sizes to measure now")
    ap.add_argument("--requests", type=int, default=200, help="random windows served")
    ap.add_argument("--table", action="store_true", help="only print the saved sizes' table")
    ap.add_argument("--cli", type=int, nargs="*", default=[], help="re-measure sizes' CLI")
    args = ap.parse_args()
    for users in args.cli:
        measure_cli(users)
    if not args.table:
        for users in args.users:
            measure(users, args.requests)
    done = [json.loads(saved(u).read_text()) for u in SIZES if saved(u).exists()]
    rows = list(done)
    if len(done) >= 2:
        rows += [project(done[-2], done[-1], u) for u in SIZES if u > done[-1]["users"]]
    print(table(rows))
    if rows:
        for r in done:
            print(f"\nfresh CLI at {r['users']:,} users, wall / CPU per window: "
                  + ", ".join(f"{k}: {c['s']:.2f} / {c['cpu_s']:.2f} s"
                              for k, c in r["cli"].items()))  # fmt: skip


if __name__ == "__main__":
    main()
