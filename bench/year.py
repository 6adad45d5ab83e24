"""Issue 26 part 6: a year of operation, simulated, one day at a time.

    .venv/bin/python bench/year.py --quick     # 20,000 users a day over 60 days
    .venv/bin/python bench/year.py             # 200,000 users a day over 365 days

One population is generated (``userportrait.synthetic.generate``), then each day's events
are written to a Parquet file and added to ONE data directory by a bulk ingest in a fresh
process (its time and peak RSS are its own, as in bench/perf.py). Every 15th day a real
``userportrait serve`` answers random windows of 1-366 days (each asked once) over HTTP.
Along the way: a live flush (POST /v1/events, waited for until visible) on day 100, a
forget of 1,000 users (CLI, server stopped) on day 200, an expire keeping 180 days on day
300 (all scaled to a shorter run; skipped, and said so, where ``expire`` does not exist
yet). Prints one Markdown table per month and the last-month / first-month ratios.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from perf import _proc_hwm, pct, server

HERE = Path(__file__).resolve().parent
CACHE = HERE / "cache"
APPID = "wx0000000000000001"
SECRET = "bench-secret-1"
START = dt.date(2025, 1, 1)  # 365 days from here are the calendar months of 2025
UP = [sys.executable, "-m", "userportrait"]
#: Days a user visits on in a year, on average (the generator's visits_per_user / 1.25).
VISIT_DAYS = 24
FORGOTTEN = 1_000
RETENTION_DAYS = 180
LIVE_EVENTS = 1_000


def step_add_day(src: Path, data: Path) -> dict[str, Any]:
    """Run in a fresh process: one bulk ingest of one day's file into ``data``."""
    import resource

    from userportrait.ingest.pipeline import ingest_file
    from userportrait.runtime import tune_process
    from userportrait.settings import Settings
    from userportrait.store.lake import Lake

    tune_process()  # as the CLI does when it starts
    t = time.perf_counter()
    report = ingest_file(Lake(Settings(data_dir=data)), src)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"s": time.perf_counter() - t, "events": report.accepted,
            "rss_mb": _proc_hwm(os.getpid()), "cpu_s": usage.ru_utime + usage.ru_stime}  # fmt: skip


def add_day(src: Path, data: Path) -> dict[str, Any]:
    os.sync()  # the previous day's dirty pages are not this day's cost
    out = subprocess.run([sys.executable, __file__, "--step-add", str(src), str(data)],
                         capture_output=True, text=True)  # fmt: skip
    if out.returncode:
        raise SystemExit(f"add day {src} failed:\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([*UP, *args], capture_output=True, text=True)
    if check and out.returncode:
        raise SystemExit(f"userportrait {' '.join(args)} failed:\n{out.stdout}{out.stderr}")
    return out


def token(c: Any) -> str:
    params = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
    return str(c.get("/cgi-bin/token", params=params).json()["access_token"])


def uv(answer: dict[str, Any]) -> int:
    """The window's visiting users (every user has one gender row, 未知 included)."""
    return sum(int(g["value"]) for g in answer["visit_uv"]["genders"])


def portrait(c: Any, tok: str, begin: dt.date, end: dt.date) -> dict[str, Any]:
    params = {"begin": f"{begin:%Y%m%d}", "end": f"{end:%Y%m%d}", "access_token": tok}
    r = c.get(f"/v1/apps/{APPID}/portrait", params=params)
    assert r.status_code == 200 and "visit_uv" in r.json(), r.text
    out: dict[str, Any] = r.json()
    return out


def served(
    data: Path, cut: dt.date | None, last: dt.date, n: int, rng: random.Random
) -> dict[str, Any]:
    """Latency (ms) of ``n`` random windows of 1-366 days ending on a day added, each asked
    once; after an expiry, begun no earlier than its cut (earlier ones are refused)."""
    import httpx

    first = cut or START
    windows = set()
    for _ in range(20 * n):  # fewer than n when there are fewer distinct windows
        if len(windows) == n:
            break
        end = first + dt.timedelta(days=rng.randint(0, (last - first).days))
        begin = end - dt.timedelta(days=rng.randint(1, 366) - 1)
        windows.add((max(begin, cut) if cut else begin, end))
    with server(data) as (url, pid), httpx.Client(base_url=url, timeout=120) as c:
        tok = token(c)
        portrait(c, tok, last, last)  # the first answer pays the process's lazy imports
        ms = []
        for begin, end in sorted(windows, key=lambda _: rng.random()):
            t = time.perf_counter()
            portrait(c, tok, begin, end)
            ms.append((time.perf_counter() - t) * 1000)
        rss = _proc_hwm(pid)
    return {"ms": ms, "rss_mb": rss}


def live_flush(data: Path, day: dt.date) -> str:
    """POST ``LIVE_EVENTS`` events of new users for ``day`` to a live server; the time until
    its 1-day portrait counts them."""
    import httpx

    key = cli("apps", "ingest-key", "--appid", APPID, "--data-dir", str(data)).stdout
    key = key.strip().splitlines()[-1]
    lines = [json.dumps({"appid": APPID, "openid": f"live{i:06d}", "province": "广东",
                         "ts": f"{day}T12:{i % 60:02d}:00+08:00"}) for i in range(LIVE_EVENTS)]  # fmt: skip
    with server(data, live=True) as (url, _), httpx.Client(base_url=url, timeout=60) as c:
        tok = token(c)
        before = uv(portrait(c, tok, day, day))
        t = time.perf_counter()
        r = c.post("/v1/events", content="\n".join(lines) + "\n",
                   headers={"Authorization": f"Bearer {key}"})  # fmt: skip
        assert r.status_code == 200, r.text
        acked = time.perf_counter() - t
        while uv(portrait(c, tok, day, day)) == before:
            if time.perf_counter() - t > 60:
                raise SystemExit("live flush: not visible after 60 s")
            time.sleep(0.05)
        visible = time.perf_counter() - t
        after = uv(portrait(c, tok, day, day))
    return (f"live flush on {day}: {LIVE_EVENTS:,} events acknowledged in {acked:.2f} s, "
            f"visible after {visible:.2f} s (1-day visit_uv {before} -> {after})")  # fmt: skip


def forget(data: Path, population: int) -> str:
    ids = [f"o{u:09d}" for u in range(0, population, population // FORGOTTEN)][:FORGOTTEN]
    path = data.parent / "year-forget.txt"
    path.write_text("\n".join(ids) + "\n")
    t = time.perf_counter()
    out = cli("forget", "--appid", APPID, "--file", str(path), "--data-dir", str(data))
    took = time.perf_counter() - t
    path.unlink()
    return f"forget of {FORGOTTEN:,} openids (CLI): {took:.2f} s; {out.stdout.strip().splitlines()[-1]}"


def expire(data: Path, cut: dt.date) -> tuple[str, bool]:
    if cli("expire", "--help", check=False).returncode:
        return "expire: not available", False
    t = time.perf_counter()
    args = ("--before", f"{cut:%Y%m%d}", "--appid", APPID, "--data-dir", str(data))
    out = cli("expire", *args, check=False)
    took = time.perf_counter() - t
    if out.returncode:  # a command still being built: say so, and go on with the year
        return f"expire failed ({out.returncode}): {(out.stdout + out.stderr).strip()}", False
    last = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    return f"expire --before {cut:%Y%m%d} (CLI): {took:.2f} s; {last}", True


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def events_kept(data: Path) -> int:
    from userportrait.settings import Settings
    from userportrait.store.lake import Lake

    return sum(f.rows for f in Lake(Settings(data_dir=data)).files(APPID))


def write_day(table: Any, path: Path, users: int, rng: random.Random) -> int:
    """Write the events of ``users`` of the day's visitors drawn at random (all of them if
    fewer): the generator's visitors a day grow about 3x over its days (late starters
    visit more often), the year wants the same load every day. Returns the users kept."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from userportrait.synthetic.generate import _plain_schema

    visitors = pc.unique(table["openid"]).to_pylist()
    if len(visitors) > users:
        kept = pa.array(rng.sample(visitors, users), pa.string())
        table = table.filter(pc.is_in(table["openid"], value_set=kept))
    pq.write_table(table.cast(_plain_schema(table.schema)), path, compression="zstd")
    return min(users, len(visitors))


# -- main -----------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="20,000 users a day over 60 days")
    ap.add_argument("--users-per-day", type=int, default=None, help="default 200,000")
    ap.add_argument("--days", type=int, default=None, help="default 365")
    ap.add_argument("--windows", type=int, default=60, help="random windows per measurement")
    ap.add_argument("--measures-per-month", type=int, default=2)
    ap.add_argument("--data", type=Path, default=CACHE / "year-data")
    ap.add_argument("--step-add", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.step_add:
        print(json.dumps(step_add_day(*args.step_add)))
        return
    from userportrait.synthetic.generate import GeneratorConfig, generate_days

    per_day = args.users_per_day or (20_000 if args.quick else 200_000)
    days = args.days or (60 if args.quick else 365)
    # ~VISIT_DAYS visit days per user a year would give per_day users a day; measured, the
    # generator gives ~0.65 of that in the first month and ~3x that in the last, so twice
    # the population, and ``write_day`` keeps per_day of each day's visitors.
    # The generator spreads a user's visits over the days generated: scale them to the run.
    population = 2 * per_day * 365 // VISIT_DAYS
    visits = VISIT_DAYS * 1.25 * days / 365
    cfg = GeneratorConfig(users=population, days=days, apps=1, visits_per_user=visits,
                          end=START + dt.timedelta(days=days - 1))  # fmt: skip
    data: Path = args.data
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    cli("apps", "add", "--appid", APPID, "--secret", SECRET, "--data-dir", str(data))
    src = data.parent / "year-day.parquet"
    print(f"year: {per_day:,} users a day (population {population:,}), {days} days, "
          f"data in {data}", file=sys.stderr)  # fmt: skip
    # Where the events happen, scaled to the run's length (days 100/200/300 of 365), and
    # the retention the expiry keeps (180 of 365 days).
    at_live, at_forget, at_expire = (round(days * k / 365) for k in (100, 200, 300))
    rng = random.Random(26)
    months: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    cut: dt.date | None = None
    every = max(1, 30 // args.measures_per_month)
    added = 0
    for d, table in enumerate(generate_days(cfg)):
        day = START + dt.timedelta(days=d)
        users = write_day(table, src, per_day, rng)
        r = add_day(src, data)
        added += r["events"]
        m = months.setdefault(f"{day:%Y-%m}", {"add": [], "cpu": [], "rss": [], "ms": [],
                                                "srv_rss": [], "events": [], "users": []})  # fmt: skip
        m["users"].append(users)
        m["add"].append(r["s"])
        m["cpu"].append(r["cpu_s"])
        m["rss"].append(r["rss_mb"])
        m["events"].append(r["events"])
        if d + 1 == at_live:
            notes.append(live_flush(data, day))
        elif d + 1 == at_forget:
            notes.append(forget(data, population))
        elif d + 1 == at_expire:
            expired = day - dt.timedelta(days=round(RETENTION_DAYS * days / 365) - 1)
            note, done = expire(data, expired)
            notes.append(note)
            cut = expired if done else None
        if d + 1 in (at_live, at_forget, at_expire):
            print(f"  {notes[-1]}", file=sys.stderr)
        month_end = (day + dt.timedelta(days=1)).month != day.month or d + 1 == days
        # Every ``every`` days, and at a month's end if the month has no measure yet.
        if (d + 1) % every == 0 or (month_end and not m["ms"]):
            s = served(data, cut, day, args.windows, rng)
            m["ms"] += s["ms"]
            m["srv_rss"].append(s["rss_mb"])
        if month_end:
            m["lake"], m["state"] = du(data / "events"), du(data / "state")
            m["kept"] = events_kept(data)
            m["days"] = d + 1
            print(f"  {day:%Y-%m}: add {pct(m['add'], 0.5):.2f} s, served p50 "
                  f"{pct(m['ms'], 0.5):.0f} ms, lake {m['lake'] / 2**20:.0f} MiB, "
                  f"load {os.getloadavg()[0]:.1f}", file=sys.stderr)  # fmt: skip
    src.unlink()
    report(per_day, population, days, added, months, notes)


def report(per_day: int, population: int, days: int, added: int,
           months: dict[str, dict[str, Any]], notes: list[str]) -> None:  # fmt: skip
    print(f"\n{days} days added one by one, up to {per_day:,} users a day (population "
          f"{population:,}), {added:,} events added, one appid\n")  # fmt: skip
    print("| month | days | users / events a day | add a day: median (max), CPU | "
          "served p50 / p99 (n) | events kept | lake | state | lake B/event | "
          "peak RSS: add / server |")  # fmt: skip
    print("|---|---:|---|---|---|---:|---:|---:|---:|---|")
    for name, m in months.items():
        print(f"| {name} | {m['days']} | {pct(m['users'], 0.5):,} / {pct(m['events'], 0.5):,} | "
              f"{pct(m['add'], 0.5):.2f} s ({max(m['add']):.2f}), "
              f"{pct(m['cpu'], 0.5):.2f} s | {pct(m['ms'], 0.5):.0f} / {pct(m['ms'], 0.99):.0f} ms"
              f" ({len(m['ms'])}) | {m['kept']:,} | {m['lake'] / 2**20:.0f} MiB | "
              f"{m['state'] / 2**20:.0f} MiB | {m['lake'] / max(1, m['kept']):.1f} | "
              f"{max(m['rss']):.0f} / {max(m['srv_rss'], default=float('nan')):.0f} MiB |")  # fmt: skip
    # The last month with at least 15 days added (a run's last month may hold one day).
    whole = [name for name, m in months.items() if len(m["add"]) >= 15] or list(months)
    first, last = months[whole[0]], months[whole[-1]]
    print(f"\n| {whole[-1]} / {whole[0]} | ratio | target |\n|---|---:|---|")
    for label, key, q in (("add a day, median", "add", 0.5), ("add a day, CPU median", "cpu", 0.5),
                          ("served p50", "ms", 0.5), ("served p99", "ms", 0.99)):  # fmt: skip
        print(f"| {label} | {pct(last[key], q) / pct(first[key], q):.2f} | ≤ 1.5 |")
    print("\n" + "\n".join(f"* {n}" for n in notes))


if __name__ == "__main__":
    main()
