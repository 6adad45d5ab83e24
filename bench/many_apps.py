"""Issue 30: the same events as one app and as many apps (a platform's thousand apps).

    .venv/bin/python bench/many_apps.py --users 30000 --days 10 --apps 1 200 1000
    .venv/bin/python bench/many_apps.py --profile --apps 200     # where an app's cost goes
    .venv/bin/python bench/many_apps.py --serve --reuse --apps 1 1000 --registered 10000

One generated data set (``userportrait.synthetic``, one app) is spread over N apps by the
user (``appid`` from a hash of the openid, so each app holds ≈ users/N users on every day),
and for each N, in a fresh data directory: a bulk ingest of all days but the last, the last
day added, a live flush (1,000 events of the newest day over min(500, N) apps, NDJSON
through ``ingest_file``, as the live flusher runs a WAL segment), a full rebuild of the
state, then the files and bytes under the data directory. Every step runs in its own
subprocess (its own time and peak RSS). Generated input is cached in bench/cache/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from perf import cli_env, pct, server  # noqa: E402  (bench/ is no package)

CACHE = HERE / "cache"
END = dt.date(2026, 1, 31)


def inputs(users: int, days: int, apps: int) -> tuple[Path, Path, Path]:
    """(every day but the last, the last day, a 1,000-event flush of the last day) for
    ``apps`` apps, cached."""
    stem = CACHE / f"many-u{users}-d{days}-a{apps}"
    base, extra, flush = (
        Path(f"{stem}-{p}") for p in ("base.parquet", "extra.parquet", "flush.ndjson")
    )
    if base.exists() and extra.exists() and flush.exists():
        return base, extra, flush
    import duckdb

    from userportrait.synthetic.generate import GeneratorConfig, write_events

    CACHE.mkdir(exist_ok=True)
    full = CACHE / f"many-u{users}-d{days}-all.parquet"
    if not full.exists():
        write_events(full, GeneratorConfig(users=users, days=days, apps=1, end=END))
    con = duckdb.connect(config={"threads": 2, "memory_limit": "1GB"})
    con.execute("SET TimeZone = 'Asia/Shanghai'")
    # An app per user: wx + 16 hex digits, as the generator names them.
    appid = f"printf('wx%016x', hash(openid) % {apps} + 1)"
    con.execute(
        f"CREATE VIEW spread AS SELECT * REPLACE ({appid} AS appid) FROM read_parquet('{full}')"
    )
    cut = f"TIMESTAMPTZ '{END} 00:00:00+08'"
    for path, cond in ((base, f"ts < {cut}"), (extra, f"ts >= {cut}")):
        con.execute(
            f"COPY (SELECT * FROM spread WHERE {cond}) TO '{path}' "
            "(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 1048576)"
        )
    # The flush: 1,000 events of the last day, over min(500, apps) apps, users known.
    touched = min(500, apps)
    rows = con.execute(
        f"SELECT * REPLACE (strftime(ts, '%Y-%m-%dT%H:%M:%S.%f+08:00') AS ts) FROM spread "
        f"WHERE {cond} AND (hash(openid) % {apps}) < {touched} "
        "ORDER BY hash(openid || CAST(ts AS VARCHAR)) LIMIT 1000"
    )
    names = [d[0] for d in rows.description]
    with flush.open("w") as fh:
        for row in rows.fetchall():
            record = {k: v for k, v in zip(names, row, strict=True) if v is not None}
            fh.write(json.dumps(record, default=str) + "\n")
    con.close()
    return base, extra, flush


def _lake(data: Path) -> Any:
    from userportrait.settings import Settings
    from userportrait.store.lake import Lake

    return Lake(Settings(data_dir=data))


def step(name: str, src: Path, data: Path) -> dict[str, Any]:
    """One step, in this process: its seconds."""
    from userportrait.ingest.pipeline import ingest_file

    t = time.perf_counter()
    if name in ("ingest", "add_day", "flush"):
        report = ingest_file(_lake(data), src)
        assert report.batch_id is not None, report
    elif name == "rebuild":
        from userportrait.store.state import StateStore

        StateStore(_lake(data)).rebuild()
    else:
        raise SystemExit(f"unknown step {name}")
    return {"s": time.perf_counter() - t}


def run_step(name: str, src: Path, data: Path, profile: bool = False) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--step", name, str(src), str(data)]
    if profile:
        argv[1:1] = ["-m", "cProfile", "-s", "cumtime"]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    if profile:
        print(out[:12000])
    return json.loads(out.strip().splitlines()[-1] if not profile else _last_json(out))


def _last_json(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("{"))


def files_and_bytes(data: Path) -> tuple[int, int]:
    n = size = 0
    for path in data.rglob("*"):
        if path.is_file():
            n += 1
            size += path.stat().st_size
    return n, size


def appid(k: int) -> str:
    """The k-th app (from 1), named as ``inputs`` names them."""
    return f"wx{k:016x}"


ADMIN_KEY = "bench-admin-key-30"


def register(data: Path, registered: int) -> None:
    """Apps 1..``registered`` registered (the missing ones), and the dashboard admin key."""
    import hashlib
    import secrets

    from userportrait.auth.digests import hash_secret
    from userportrait.auth.store import AuthStore
    from userportrait.dashboard.sessions import write_admin_key

    salt = secrets.token_bytes(16)
    digest = hash_secret(hashlib.sha256(salt).hexdigest(), salt)  # no one signs in with it
    store = AuthStore(data / "meta.sqlite")
    with store._db() as con:
        con.executemany(
            "INSERT OR IGNORE INTO apps(appid, salt, secret_hash, created_at) VALUES (?, ?, ?, ?)",
            ((appid(k), salt, digest, time.time()) for k in range(1, registered + 1)),
        )
    write_admin_key(data, ADMIN_KEY)


def _ms(c: Any, method: str, path: str, **kw: Any) -> float:
    t = time.perf_counter()
    r = c.request(method, path, **kw)
    ms = (time.perf_counter() - t) * 1000
    assert r.status_code == 200, (path, r.status_code, r.text[:300])
    return ms


def served(data: Path, apps: int, registered: int, requests: int, days: int) -> dict[str, Any]:
    """Latencies (ms) through a real server, signed in with the admin key: the first query
    of ``min(200, apps)`` apps not touched since start, then ``requests`` random (app,
    window) queries, ``/healthz`` and the app picker; and a fresh ``apps list``."""
    import httpx

    register(data, registered)
    listing = [sys.executable, "-m", "userportrait", "apps", "list", "--data-dir", str(data)]
    took = []
    for _ in range(4):  # the first writes the .pyc files (cli_env)
        t = time.perf_counter()
        out = subprocess.run(listing, check=True, capture_output=True, text=True, env=cli_env())
        took.append(time.perf_counter() - t)
        assert len(out.stdout.splitlines()) == registered, out.stdout[-300:]
    rng = random.Random(30)

    def window() -> dict[str, str]:  # ending on any day of the data or a few after
        end = END - dt.timedelta(days=rng.randint(-5, days - 1))
        n = rng.randint(1, 366)
        return {"begin": f"{end - dt.timedelta(days=n - 1):%Y%m%d}", "end": f"{end:%Y%m%d}"}

    def ask(c: Any, k: int) -> float:
        return _ms(c, "GET", f"/v1/apps/{appid(k)}/portrait", params=window())

    with server(data) as (url, pid), httpx.Client(base_url=url, timeout=120) as c:
        r = c.post("/dashboard/signin", json={"admin_key": ADMIN_KEY})
        assert r.status_code == 200 and r.json()["errcode"] == 0, r.text
        picker = r.json()["apps"]
        assert len(picker) == registered, len(picker)
        untouched = rng.sample(range(1, apps + 1), min(200, apps))
        # The server's first portrait pays its lazy imports: an app outside the sample.
        warm = ask(c, next(k for k in range(1, apps + 2) if k not in untouched))
        first = [ask(c, k) for k in untouched]
        every = [ask(c, rng.randint(1, apps)) for _ in range(requests)]
        health = [_ms(c, "GET", "/healthz") for _ in range(200)]
        me = [_ms(c, "GET", "/dashboard/me") for _ in range(50)]
        hwm = _proc_hwm(pid)
    return {"warm": warm, "first": first, "every": every, "healthz": health, "picker": me,
            "apps_list": sorted(took[1:])[1], "rss_mib": hwm}  # fmt: skip


def _proc_hwm(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def serve_table(rows: list[dict[str, Any]]) -> None:
    def lat(xs: list[float]) -> str:
        return f"{pct(xs, 0.5):.1f} / {pct(xs, 0.99):.1f} ms"

    print(
        "\n| apps (registered) | portrait, random app + window: p50 / p99 (n) | "
        "first query of an untouched app: p50 / p99 / max (n) | the server's first portrait | `/healthz` p50 / p99 | "
        "app picker `/dashboard/me` p50 / p99 | `apps list` (fresh CLI) | server RSS |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        s = r["serve"]
        print(
            f"| {r['apps']:,} ({s['registered']:,}) | {lat(s['every'])} ({len(s['every'])}) | "
            f"{lat(s['first'])} / {max(s['first']):.1f} ms ({len(s['first'])}) | {s['warm']:.1f} ms | "
            f"{lat(s['healthz'])} | {lat(s['picker'])} | {s['apps_list']:.2f} s | "
            f"{s['rss_mib']:.0f} MiB |"
        )
    print()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--step", nargs=3, metavar=("NAME", "SRC", "DATA"))
    ap.add_argument("--users", type=int, default=30_000)
    ap.add_argument("--days", type=int, default=10)
    ap.add_argument("--apps", type=int, nargs="+", default=[1, 1000])
    ap.add_argument("--profile", action="store_true", help="cProfile the bulk ingest")
    ap.add_argument("--work", type=Path, default=CACHE / "many-data")
    ap.add_argument("--serve", action="store_true", help="then measure serving (targets 2-3)")
    ap.add_argument("--reuse", action="store_true", help="keep a built data dir: serve only")
    ap.add_argument("--registered", type=int, default=0, help="apps registered (≥ --apps)")
    ap.add_argument("--requests", type=int, default=1000)
    args = ap.parse_args()
    if args.step:
        name, src, data = args.step
        result = step(name, Path(src), Path(data))
        result["rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    rows = []
    for apps in args.apps:
        base, extra, flush = inputs(args.users, args.days, apps)
        data = args.work / f"a{apps}"
        row: dict[str, Any] = {"apps": apps}
        if not (args.reuse and (data / "state").is_dir()):
            subprocess.run(["rm", "-rf", str(data)], check=True)
            for name, src in (("ingest", base), ("add_day", extra), ("flush", flush)):
                row[name] = run_step(name, src, data, args.profile and name == "ingest")
            row["files"], row["bytes"] = files_and_bytes(data)
            row["rebuild"] = run_step("rebuild", base, data)
        if args.serve:
            registered = max(apps, args.registered)
            row["serve"] = served(data, apps, registered, args.requests, args.days)
            row["serve"]["registered"] = registered
            row["serve"]["load"] = os.getloadavg()
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "serve"}), file=sys.stderr)
    print(
        f"\n{args.users:,} users, {args.days} days; {os.cpu_count()} cores "
        f"(shared with other engineers); {dt.date.today()}\n"
    )
    if args.serve:
        serve_table(rows)
    built = [r for r in rows if "ingest" in r]
    if not built:
        return
    print("| apps | ingest | peak RSS | add a day | flush 1,000 | rebuild | files | bytes |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in built:
        print(
            f"| {r['apps']:,} | {r['ingest']['s']:.1f} s | {r['ingest']['rss_mib']:.0f} MiB | "
            f"{r['add_day']['s']:.2f} s | {r['flush']['s']:.2f} s | {r['rebuild']['s']:.1f} s | "
            f"{r['files']:,} | {r['bytes'] / 1e6:.1f} MB |"
        )


if __name__ == "__main__":
    main()
