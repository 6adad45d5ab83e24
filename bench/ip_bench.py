"""Issue 17: bulk ingest of a set whose events carry an ``ip`` instead of province/city.

    .venv/bin/python bench/ip_bench.py --users 150000     # ~1.9 M events
    .venv/bin/python bench/ip_bench.py                    # ~36 M events, 3 M users, 40 days

Two files from one generator seed, identical but for the region columns (``--ips``:
an ``ip`` per event; else ``province``/``city``), each decoded (median of 3) and bulk
ingested (lake + state) in its own process through ``bench/perf.py``'s steps. Generated
input is cached in bench/cache/ (git-ignored). Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import perf  # noqa: E402  (bench/perf.py: run_step and its subprocess steps)


def inputs(users: int) -> dict[str, Path]:
    from userportrait.synthetic.generate import GeneratorConfig, write_events

    perf.CACHE.mkdir(exist_ok=True)
    out = {}
    for name, ips in (("province/city", False), ("ip", True)):
        path = perf.CACHE / f"u{users}-{'ip' if ips else 'region'}.parquet"
        if not path.exists():
            cfg = GeneratorConfig(users=users, days=40, apps=1, end=perf.END, ips=ips)
            t = time.perf_counter()
            n = write_events(path, cfg)
            print(f"generated {path.name}: {n:,} events in {time.perf_counter() - t:.0f} s",
                  file=sys.stderr)  # fmt: skip
        out[name] = path
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=3_000_000)
    ap.add_argument("--repeat", type=int, default=3, help="rounds (each: both files)")
    args = ap.parse_args()
    files = inputs(args.users)
    data = perf.CACHE / f"ip-bench-data-{args.users}"
    # Rounds alternate the two files, so that the shared machine's load hits both alike.
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        n: {"decode": [], "ingest": []} for n in files
    }
    for _ in range(args.repeat):
        for name, src in files.items():
            for step in ("decode", "ingest"):
                runs[name][step].append(perf.run_step(step, src, data))
    med = {n: {s: _median(r) for s, r in steps.items()} for n, steps in runs.items()}
    print(f"\n`bench/ip_bench.py --users {args.users} --repeat {args.repeat}`, "
          f"{dt.date.today()}, {platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} at the end\n")  # fmt: skip
    print(
        "| input | events | decode (median) | bulk ingest, lake + state (median) | runs | peak RSS |"
    )
    print("|---|---:|---:|---:|---|---:|")
    for name, m in med.items():
        times = " / ".join(f"{r['s']:.2f}" for r in runs[name]["ingest"])
        print(
            f"| {name} | {m['ingest']['events']:,} | {m['decode']['s']:.2f} s | "
            f"{m['ingest']['s']:.2f} s | {times} | {m['ingest']['rss_mb']:.0f} MiB |"
        )
    region, ip = med["province/city"], med["ip"]
    print(f"\nip ingest / province-city ingest: {ip['ingest']['s'] / region['ingest']['s']:.2f}; "
          f"ingest / decode: province-city {region['ingest']['s'] / region['decode']['s']:.1f}, "
          f"ip {ip['ingest']['s'] / ip['decode']['s']:.1f}, "
          f"ip ingest / province-city decode {ip['ingest']['s'] / region['decode']['s']:.1f}")  # fmt: skip


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(runs, key=lambda r: r["s"])
    return {**ordered[len(ordered) // 2], "rss_mb": max(r["rss_mb"] for r in runs)}


if __name__ == "__main__":
    main()
