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
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import perf  # noqa: E402  (bench/perf.py: run_step and its subprocess steps)


def inputs(users: int) -> dict[str, Path]:
    from userportrait.generate import GeneratorConfig, write_events

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
    args = ap.parse_args()
    files = inputs(args.users)
    rows = []
    for name, src in files.items():
        data = perf.CACHE / f"ip-bench-data-{args.users}"
        decode = perf.run_step("decode", src, data, repeat=3)
        ingest = perf.run_step("ingest", src, data)
        rows.append((name, src, decode, ingest))
    print(f"\n`bench/ip_bench.py --users {args.users}`, {dt.date.today()}, "
          f"{platform.machine()}, {perf.os.cpu_count()} cores\n")  # fmt: skip
    print("| input | events | decode | bulk ingest (lake + state) | ingest / decode | peak RSS |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, _src, decode, ingest in rows:
        print(
            f"| {name} | {ingest['events']:,} | {decode['s']:.2f} s | {ingest['s']:.2f} s | "
            f"{ingest['s'] / decode['s']:.1f} | {ingest['rss_mb']:.0f} MiB |"
        )
    base, ip = rows[0][3]["s"], rows[1][3]["s"]
    print(f"\nip / province-city ingest: {ip / base:.2f}; "
          f"ip ingest / province-city decode: {ip / rows[0][2]['s']:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
