"""Issues 5, 14 and 28: the incremental store against the naive one-query DuckDB baseline
and ClickHouse (chDB, ``pip install -e '.[bench]'``; skipped with a note when missing).

    .venv/bin/python bench/perf.py --small     # ~1.9 M events, under a minute
    .venv/bin/python bench/perf.py             # ~40 M events, 3 M users, 40 days
    .venv/bin/python bench/perf.py --segments  # issue 27: compare / filter / by over HTTP
    .venv/bin/python bench/perf.py --live      # issue 28: 8 senders POST /v1/events

Every measured step runs in its own subprocess (``--step NAME``), so its time and peak RSS
are its own; the short ones run three times and report the median. Generated input is
cached in bench/cache/ (git-ignored). The naive baseline's
30-day answer is CHECKED equal to the store's, and ClickHouse's answers of five windows
(``CHECKED``) too. Prints one table (Markdown). bench/growth.py reuses these steps per size.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

HERE = Path(__file__).resolve().parent
CACHE = HERE / "cache"
APPID = "wx0000000000000001"
SECRET = "bench-secret-1"
END = dt.date(2026, 1, 31)  # generator default; the extra day is END + 1
SHANGHAI = ZoneInfo("Asia/Shanghai")


def config(users: int, days: int) -> Any:
    from userportrait.synthetic.generate import GeneratorConfig

    return GeneratorConfig(
        users=users, days=days, apps=1, visits_per_user=13.0, end=END + dt.timedelta(days=1)
    )


def inputs(users: int) -> tuple[Path, Path]:
    """(40-day file, the 41st day) from one 41-day generated data set, cached."""
    base, extra = CACHE / f"u{users}-base.parquet", CACHE / f"u{users}-extra.parquet"
    if base.exists() and extra.exists():
        return base, extra
    import duckdb

    from userportrait.synthetic.generate import write_events

    CACHE.mkdir(exist_ok=True)
    full = CACHE / f"u{users}-all.parquet"
    t = time.perf_counter()
    n = write_events(full, config(users, 41))
    print(f"generated {n:,} events in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    con = duckdb.connect(config={"threads": 2, "memory_limit": "1GB"})
    con.execute("SET TimeZone = 'Asia/Shanghai'")
    cut = f"TIMESTAMPTZ '{END + dt.timedelta(days=1)} 00:00:00+08'"
    for path, cond in ((base, f"ts < {cut}"), (extra, f"ts >= {cut}")):
        con.execute(
            f"COPY (SELECT * FROM read_parquet('{full}') WHERE {cond}) TO '{path}' "
            "(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 1048576)"
        )
    con.close()
    full.unlink()
    return base, extra


# -- steps (each in a fresh process) ------------------------------------------------------


def _lake(data: Path) -> Any:
    from userportrait.settings import Settings
    from userportrait.store.lake import Lake

    return Lake(Settings(data_dir=data))


def step_decode(src: Path, _data: Path) -> dict[str, Any]:
    """DuckDB reading every value of every column of the raw file once."""
    import duckdb

    con = duckdb.connect(config={"threads": 2, "memory_limit": "1024MB"})
    cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet('{src}')").fetchall()]
    # hash() of every value: nothing can be answered from Parquet statistics.
    aggs = ", ".join(f"sum(hash({c}))" for c in cols)
    t = time.perf_counter()
    con.execute(f"SELECT count(*), {aggs} FROM read_parquet('{src}')").fetchall()
    return {"s": time.perf_counter() - t}


def step_ingest(src: Path, data: Path) -> dict[str, Any]:
    from userportrait.ingest.pipeline import ingest_file

    shutil.rmtree(data, ignore_errors=True)
    t = time.perf_counter()
    report = ingest_file(_lake(data), src)
    return {"s": time.perf_counter() - t, "events": report.accepted}


def step_ingest_lake_only(src: Path, data: Path) -> dict[str, Any]:
    """The same ingest with the state update switched off (what the lake alone costs)."""
    from userportrait.ingest import pipeline

    pipeline.update_state = lambda *_args: None  # type: ignore[assignment]
    return step_ingest(src, data)


def step_rebuild(_src: Path, data: Path) -> dict[str, Any]:
    from userportrait.store.state import StateStore

    t = time.perf_counter()
    StateStore(_lake(data)).rebuild()
    return {"s": time.perf_counter() - t}


def _query(days: int, end: dt.date = END) -> Any:
    from userportrait.portrait.query import PortraitQuery

    return PortraitQuery(APPID, end - dt.timedelta(days=days - 1), end)


def _dump(counts: Any) -> str:
    def audience(a: Any) -> dict[str, Any]:
        a = a.normalized()
        ids = {d: sorted(v.items()) for d, v in a.ids.items()}
        return ids | {"devices": sorted((k or "", v) for k, v in a.devices.items())}

    return json.dumps({"new": audience(counts.new), "active": audience(counts.active)})


def step_naive(_src: Path, data: Path) -> dict[str, Any]:
    from userportrait.engine.sql import SQLEngine

    t = time.perf_counter()
    counts = SQLEngine(_lake(data)).run_portrait(_query(30))
    return {"s": time.perf_counter() - t, "answer": _dump(counts)}


def step_cold(_src: Path, data: Path) -> dict[str, Any]:
    """30-day window from the day partitions (the path of windows beyond 366 days)."""
    from userportrait.store.state import StateStore, day_number

    t = time.perf_counter()
    store = StateStore(_lake(data))
    store.catch_up_if_behind()
    app = store.manifest.apps[APPID]
    devices = store._device_list(APPID, app)
    counts = store.compute(APPID, app, 30, day_number(END), devices)
    return {"s": time.perf_counter() - t, "answer": _dump(counts)}


def step_lookup(_src: Path, data: Path) -> dict[str, Any]:
    """30-day window through the engine in a fresh process (the span histograms)."""
    from userportrait.engine import get_engine

    t = time.perf_counter()
    counts = get_engine("incremental", _lake(data)).run_portrait(_query(30))
    return {"s": time.perf_counter() - t, "answer": _dump(counts)}


#: Live flushes timed per flush step: enough for the overlay to be folded into the
#: newest day's files at least once (65,536 users; about 1,000 new ones per flush).
FLUSHES = int(os.environ.get("BENCH_FLUSHES", "80"))


def _flushes(data: Path, n: int) -> dict[str, Any]:
    """``n`` flushes of 1,000 events for the newest day, as the server's live flusher
    writes them (a batch file each), in one process: the server is a running process,
    with its folder thread folding the overlay beside the flushes (issue 14)."""
    from userportrait.ingest.pipeline import ingest_file
    from userportrait.store.state.folding import OverlayFolder

    rng = random.Random(os.getpid())
    users = int(data.name.split("-")[0][1:])
    took, spans = [], []
    folder = OverlayFolder(_lake(data))
    folder.start()
    for k in range(n):
        lines = []
        for i in range(1000):
            ts = dt.datetime.combine(END, dt.time(12, rng.randrange(60), i % 60), tzinfo=dt.UTC)
            lines.append(json.dumps({"appid": APPID, "openid": f"o{rng.randrange(users):09d}",
                                     "ts": ts.isoformat(), "province": "广东"}))  # fmt: skip
        batch = data.parent / f"flush-{os.getpid()}-{k}.ndjson"
        batch.write_text("\n".join(lines) + "\n")
        t = time.perf_counter()
        ingest_file(_lake(data), batch)
        spans.append((t, time.perf_counter()))
        took.append(spans[-1][1] - t)
        folder.poke()
        batch.unlink()
    folder.stop()
    rest = sorted(took[1:])  # the first pays the process's imports and caches
    # The flushes that ran while a fold was being built beside them.
    during = [e - t for t, e in spans[1:] if any(a < e and t < b for a, b in folder.folds)]
    return {"s": statistics.median(rest), "p90": pct(rest, 0.9), "max": rest[-1],
            "first": took[0], "n": len(rest), "folds": [b - a for a, b in folder.folds],
            "during_folds": during}  # fmt: skip


def step_flush(_src: Path, data: Path) -> dict[str, Any]:
    return _flushes(data, FLUSHES)


def step_flush_busy(src: Path, data: Path) -> dict[str, Any]:
    """The same after today has grown to ~15 M events (``busy_day``: the day's time of
    ~14 M events of other days), so the newest day holds nearly every user."""
    from userportrait.ingest.pipeline import ingest_file

    t = time.perf_counter()
    report = ingest_file(_lake(data), src)
    grown = time.perf_counter() - t
    out = _flushes(data, FLUSHES)
    out.update(grown_s=grown, added=report.accepted)
    return out


def busy_day(base: Path, events: int = 14_000_000) -> Path:
    """~``events`` events moved onto the newest day (END), keeping their time of day."""
    path = base.with_name(base.name.replace("-base", "-busy"))
    if path.exists():
        return path
    import duckdb

    con = duckdb.connect(config={"threads": 2, "memory_limit": "1GB"})
    midnight = f"TIMESTAMPTZ '{END} 00:00:00+08'"
    con.execute(
        f"COPY (SELECT * REPLACE ({midnight} + to_microseconds((epoch_us(ts) + "
        "28800000000) % 86400000000) AS ts) FROM read_parquet("
        f"'{base}') LIMIT {events}) TO '{path}' (FORMAT parquet, COMPRESSION zstd)"
    )
    con.close()
    return path


def state_bytes(data: Path) -> dict[str, float]:
    """Bytes of the derived state: span histograms per end day, everything per user."""
    state = data / "state"
    spans = [p.stat().st_size for p in state.rglob("spans/*.npz")]
    total = sum(p.stat().st_size for p in state.rglob("*") if p.is_file())
    manifest = json.loads((state / "manifest.json").read_text())
    users = sum(a["n_users"] for a in manifest["apps"].values())
    return {"per_end_day": sum(spans) / max(1, len(spans)), "per_user": total / max(1, users),
            "total": total}  # fmt: skip


def cli_env() -> dict[str, str]:
    """The environment of a timed fresh CLI: with bytecode caching on, as an installed
    package runs (pip writes the .pyc files); a shell with PYTHONDONTWRITEBYTECODE set (as
    these sessions have) would otherwise compile ~50 modules from source in every process."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def cli_time(data: Path, n: int, end: dt.date) -> float:
    """Wall time of a fresh ``userportrait portrait`` process (start-up included)."""
    begin = end - dt.timedelta(days=n - 1)
    cmd = [sys.executable, "-m", "userportrait", "portrait", "--data-dir", str(data),
           "--appid", APPID, "--begin", f"{begin:%Y%m%d}", "--end", f"{end:%Y%m%d}"]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, env=cli_env())  # writes the .pyc
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=cli_env())
    return time.perf_counter() - t


def step_add_day(src: Path, data: Path) -> dict[str, Any]:
    from userportrait.ingest.pipeline import ingest_file

    t = time.perf_counter()
    report = ingest_file(_lake(data), src)
    return {"s": time.perf_counter() - t, "events": report.accepted}


#: Windows (days, end) whose answers the bench checks equal between the project and its
#: peers: WeChat's 1/7/30 days, an odd span, one ending before the newest day.
CHECKED = [(1, END), (7, END), (30, END), (23, END - dt.timedelta(days=3)), (40, END)]


def step_answers(_src: Path, data: Path) -> dict[str, Any]:
    """The project's answers for the ``CHECKED`` windows (not timed: the reference)."""
    from userportrait.engine import get_engine

    engine = get_engine("incremental", _lake(data))
    answers = {f"{n}@{end}": _dump(engine.run_portrait(_query(n, end))) for n, end in CHECKED}
    return {"s": 0.0, "answers": answers}


def step_clickhouse(src: Path, data: Path) -> dict[str, Any]:
    """The peer a data engineer would pick (issue 28): ClickHouse (chDB, embedded) loading
    the same file into a MergeTree table ordered by (appid, openid, day), normalised as the
    ingest does: the distinct raw values through the project's own value maps
    (``ingest/value_maps.map_values``), joined onto the rows; province from city, ages in
    buckets, the Asia/Shanghai day. Then the ``CHECKED`` windows, twice (cold, warm)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from chdb import session

    from userportrait.ingest.value_maps import DISTINCT_VALUES_SQL, map_values

    home = data.with_name(data.name + "-clickhouse")
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    ch = session.Session(str(home / "db"))
    ch.query("SET max_threads = 2")
    raw = f"file('{src}', Parquet)"

    def rows(sql: str) -> list[list[Any]]:
        return list(json.loads(ch.query(sql, "JSONCompact").bytes())["data"])

    def key(v: str | None, name: str) -> dict[str, Any]:
        # A join matches no NULL: the key is (is it NULL, the text or '').
        return {f"{name}_null": v is None, name: v or ""}

    t = time.perf_counter()
    distinct = rows(f"SELECT {DISTINCT_VALUES_SQL.format(src=raw)} SETTINGS group_by_use_nulls = 1")
    regions, genders, platforms = map_values(distinct)
    maps = {
        "region_map": pa.Table.from_pylist([
            key(r[0], "province") | key(r[1], "city") | {"province_id": r[2], "city_id": r[3]}
            for r in regions]),
        "gender_map": pa.Table.from_pylist([key(g, "gender") | {"gender_id": i}
                                            for g, i in genders]),
        "platform_map": pa.Table.from_pylist([key(p, "platform") | {"platform_id": i}
                                              for p, i in platforms]),
    }  # fmt: skip
    for name, table in maps.items():
        pq.write_table(table, home / f"{name}.parquet")
        ch.query(f"CREATE TABLE {name} ENGINE = Memory AS "
                 f"SELECT * FROM file('{home / name}.parquet', Parquet)")  # fmt: skip

    def on(col: str, alias: str) -> str:
        return f"isNull(c.{col}) = {alias}.{col}_null AND ifNull(c.{col}, '') = {alias}.{col}"

    buckets = " ".join(f"WHEN c.age_n <= {u} THEN {b}" for u, b in AGE_BUCKETS)
    ch.query("""CREATE TABLE events (appid String, openid String, day Date,
        ts DateTime64(6, 'UTC'), province_id Nullable(Int16), city_id Nullable(Int32),
        gender_id Nullable(Int8), platform_id Nullable(Int8), age_id Nullable(Int8),
        device Nullable(String)) ENGINE = MergeTree ORDER BY (appid, openid, day)""")
    ch.query(f"""INSERT INTO events SELECT c.appid, c.openid,
        toDate(c.ts, 'Asia/Shanghai'), c.ts, r.province_id, r.city_id, g.gender_id,
        p.platform_id, CASE WHEN c.age_n IS NULL THEN NULL {buckets} ELSE 6 END,
        nullIf(trimBoth(c.device), '')
        FROM (SELECT *, toInt16OrNull(trimBoth(toString(age))) AS age_n FROM {raw}) c
        LEFT JOIN region_map r ON {on("province", "r")} AND {on("city", "r")}
        LEFT JOIN gender_map g ON {on("gender", "g")}
        LEFT JOIN platform_map p ON {on("platform", "p")}
        SETTINGS join_use_nulls = 1""")  # fmt: skip
    load = time.perf_counter() - t
    parts = rows("SELECT count() FROM system.parts WHERE table = 'events' AND active")[0][0]
    events = rows("SELECT count() FROM events")[0][0]
    answers, took = {}, {}
    for attempt in ("cold", "warm"):
        for n, end in CHECKED:
            t = time.perf_counter()
            counts = _clickhouse_portrait(rows, n, end)
            took.setdefault(f"{n}@{end}", {})[attempt] = time.perf_counter() - t
            answers[f"{n}@{end}"] = _dump(counts)
    size = sum(p.stat().st_size for p in (home / "db").rglob("*") if p.is_file())
    ch.close()
    shutil.rmtree(home)
    return {"s": load, "events": events, "parts": parts, "bytes": size, "answers": answers,
            "query_s": took}  # fmt: skip


#: The age buckets (upper bound, id) of ``portrait/dims.py``, for the peers' SQL.
def _age_buckets() -> tuple[tuple[int, int], ...]:
    from userportrait.portrait.dims import AGE_BUCKET_UPPER

    return AGE_BUCKET_UPPER


AGE_BUCKETS = _age_buckets()


def _clickhouse_portrait(rows: Any, n: int, end: dt.date) -> Any:
    """The portrait of the last ``n`` days to ``end`` in ClickHouse SQL: per user the latest
    event carrying each attribute (ties to the larger value), new when the first day over
    all data falls in the window: the rules of ``engine/portrait_sql.py``."""
    from userportrait.portrait.counts import PortraitCounts
    from userportrait.store.lake import DIM_COLUMNS

    begin = end - dt.timedelta(days=n - 1)
    latest = ", ".join(
        f"argMaxIf({c}, (ts, {c}), {c} IS NOT NULL AND day >= '{begin}') AS {d}"
        for d, c in DIM_COLUMNS.items()
    )
    pairs = ", ".join(f"('{d}', toString({d}))" for d in DIM_COLUMNS)
    got = rows(f"""
        WITH users AS (
            SELECT openid, min(day) AS first_day,
                   countIf(day >= '{begin}') > 0 AS active, {latest}
            FROM events WHERE appid = '{APPID}' AND day <= '{end}' GROUP BY openid
        )
        SELECT kv.1 AS dim, kv.2 AS value, first_day >= '{begin}' AS is_new, count() AS n
        FROM (SELECT * FROM users WHERE active) ARRAY JOIN [{pairs}] AS kv
        GROUP BY dim, value, is_new
        SETTINGS optimize_aggregation_in_order = 1""")
    counts = PortraitCounts.empty()
    for dim, value, is_new, k in got:
        for audience in (counts.active, counts.new) if is_new else (counts.active,):
            if dim == "devices":
                audience.devices[value] = audience.devices.get(value, 0) + int(k)
            else:
                vid = 0 if value is None else int(value)
                audience.ids[dim][vid] = audience.ids[dim].get(vid, 0) + int(k)
    return counts


#: Users a forget step removes (issue 26: ≤ the time of adding one day).
FORGOTTEN = 1_000


def step_forget(_src: Path, data: Path) -> dict[str, Any]:
    """Forget ``FORGOTTEN`` users spread over the population (lake rewrite + state)."""
    from userportrait.store.forget import forget

    manifest = json.loads((data / "state" / "manifest.json").read_text())
    users = int(manifest["apps"][APPID]["n_users"])
    openids = [f"o{u:09d}" for u in range(0, users, max(1, users // FORGOTTEN))][:FORGOTTEN]
    t = time.perf_counter()
    report = forget(_lake(data), APPID, openids)
    # (the split: rejects, lake and profile files; then the derived state, patched)
    return {"s": time.perf_counter() - t, "users": report.users, "events": report.events,
            "files": report.files, "lake_s": report.lake_s, "state_s": report.state_s}  # fmt: skip


STEPS = {
    "decode": step_decode,
    "ingest": step_ingest,
    "ingest_lake_only": step_ingest_lake_only,
    "rebuild": step_rebuild,
    "naive": step_naive,
    "cold": step_cold,
    "lookup": step_lookup,
    "add_day": step_add_day,
    "flush": step_flush,
    "flush_busy": step_flush_busy,
    "forget": step_forget,
    "answers": step_answers,
    "clickhouse": step_clickhouse,
}


def _copy_store(data: Path, target: Path) -> None:
    """A working copy of the store ``data`` for a step that changes it. The lake's event
    files and the state's files are hard links: none is ever changed in place (each is
    written once under a new name, or to a temporary name renamed over the old one), so
    the step cannot touch ``data``. The rest (the SQLite catalog) is copied.

    Not a plain copy of all 1.5 GB: adding a day to a freshly copied tree measured
    0.2-0.6 s slower than to the same files linked (bit for bit the same data; neither
    its fsyncs, steal, iowait nor the page cache differed), and a real store's files were
    written long before a day is added to it."""
    shutil.copytree(data, target, ignore=shutil.ignore_patterns("events", "state"))
    for sub in ("events", "state"):
        if (data / sub).is_dir():
            shutil.copytree(data / sub, target / sub, copy_function=os.link)


def run_step(name: str, src: Path, data: Path, repeat: int = 1) -> dict[str, Any]:
    """Run a step ``repeat`` times (each in a fresh process); the run with the median time.

    Short steps are repeated because single runs on this VM vary by ±15 %. A step that
    changes the store (add_day) runs on a fresh copy of ``data`` each time.
    """
    runs = []
    for _ in range(repeat):
        target = data
        if name in ("add_day", "flush", "flush_busy", "forget"):
            target = data.with_name(data.name + "-copy")
            shutil.rmtree(target, ignore_errors=True)
            _copy_store(data, target)
        # Write back what earlier steps left in the page cache, so that their dirty pages
        # are not flushed (and waited for by this step's fsyncs) on this step's clock.
        os.sync()
        out = subprocess.run(
            [sys.executable, __file__, "--step", name, "--src", str(src), "--data", str(target)],
            capture_output=True, text=True,
        )  # fmt: skip
        if out.returncode:
            raise SystemExit(f"step {name} failed:\n{out.stderr}")
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        if target != data:
            shutil.rmtree(target)
    runs.sort(key=lambda r: r["s"])
    result: dict[str, Any] = runs[len(runs) // 2]
    result["runs"] = [r["s"] for r in runs]
    result["rss_mb"] = max(r["rss_mb"] for r in runs)
    times = ", ".join(f"{t:.2f}" for t in result["runs"])
    load = os.getloadavg()[0]
    print(f"  {name}: {result['s']:.2f} s (runs: {times}), CPU {result['cpu_s']:.1f} s, "
          f"peak RSS {result['rss_mb']:.0f} MiB, load {load:.1f}", file=sys.stderr)  # fmt: skip
    return result


# -- served latency over HTTP ---------------------------------------------------------------


def served(data: Path, requests: int) -> dict[str, Any]:
    import httpx

    up = [sys.executable, "-m", "userportrait"]
    subprocess.run([*up, "apps", "add", "--appid", APPID, "--secret", SECRET,
                    "--data-dir", str(data)], check=True, capture_output=True)  # fmt: skip
    with server(data) as (url, pid), httpx.Client(base_url=url, timeout=60) as c:
        tok = c.get("/cgi-bin/token", params={"grant_type": "client_credential",
                    "appid": APPID, "secret": SECRET}).json()["access_token"]  # fmt: skip
        rng = random.Random(5)
        # Any window: spans of 1-366 days ending on any of the 40 days or a few after,
        # each asked once (no answer cache can help); then WeChat's 1/7/30-day windows.
        odd = list({(rng.randint(1, 366), END - dt.timedelta(days=rng.randint(-5, 39)))
                    for _ in range(requests)})[:requests]  # fmt: skip
        wechat = [(n, END - dt.timedelta(days=k)) for n in (1, 7, 30) for k in range(40)]
        lat_first: list[float] = []
        lat_all: list[float] = []
        path = f"/v1/apps/{APPID}/portrait"
        for i, (n, end) in enumerate(odd + wechat):
            params = {"begin": f"{end - dt.timedelta(days=n - 1):%Y%m%d}",
                      "end": f"{end:%Y%m%d}", "access_token": tok}  # fmt: skip
            t = time.perf_counter()
            r = c.get(path, params=params)
            ms = (time.perf_counter() - t) * 1000
            assert r.status_code == 200 and "visit_uv" in r.json(), r.text
            (lat_first if i < len(odd) else lat_all).append(ms)
        hwm = _proc_hwm(pid)
    return {"first": lat_first, "repeat": lat_all, "rss_mb": hwm}


# -- live ingestion over HTTP (issue 28 target 4) --------------------------------------------

#: Client records of the newest day: existing users, the generator's kinds of values.
LIVE_VALUES = {"city": ["深圳", "德阳市", "4111", "双鸭山"], "province": ["广东", "四川省", None],
               "gender": ["女", "male", None], "platform": ["ios", "android", "ohos"],
               "device": ["iPhone 15", "Xiaomi 12S", "HUAWEI P40", "HUAWEI P60"]}  # fmt: skip


def _live_bodies(users: int, seed: int, n: int = 12) -> list[bytes]:
    """``n`` request bodies of 1,000 events each for END (the newest day: a flush lands in
    the day that holds the most), sent round robin; no ``event_id``, so none is dropped."""
    import orjson

    rng = random.Random(seed)
    bodies = []
    for _ in range(n):
        batch = []
        for _ in range(1000):
            ts = dt.datetime.combine(END, dt.time(rng.randrange(24), rng.randrange(60),
                                     rng.randrange(60)), tzinfo=SHANGHAI)  # fmt: skip
            record = {k: rng.choice(v) for k, v in LIVE_VALUES.items()}
            record.update(appid=APPID, openid=f"o{rng.randrange(users):09d}", ts=ts.isoformat())
            batch.append({k: v for k, v in record.items() if v is not None})
        bodies.append(orjson.dumps(batch))
    return bodies


def _scrape(c: Any) -> dict[str, float]:
    """The live figures of ``GET /metrics``: pending events and the flush histogram."""
    out: dict[str, float] = {}
    for line in c.get("/metrics").text.splitlines():
        m = re.match(r"userportrait_live_(pending_events|flush_duration_seconds_\w+)"
                     r'(?:\{le="([^"]+)"\})? (\S+)$', line)  # fmt: skip
        if m:
            out[m.group(1) + (f"@{m.group(2)}" if m.group(2) else "")] = float(m.group(3))
    return out


def live(data: Path, senders: int, seconds: float) -> dict[str, Any]:
    """``senders`` threads POST /v1/events batches of 1,000 with the ingest key to a real
    server (live ingestion on, the default 2 s flush interval) on a hard-linked copy of the
    store, for ``seconds``; a batch counts once acknowledged (after the WAL's fsync). Then
    the time until every acknowledged event is in a committed batch (pending 0)."""
    import httpx

    users = int(data.name.split("-")[0][1:])
    copy = data.with_name(data.name + "-live")
    shutil.rmtree(copy, ignore_errors=True)
    _copy_store(data, copy)
    up = [sys.executable, "-m", "userportrait"]
    # Not checked: the app may be registered already (served() adds it).
    subprocess.run([*up, "apps", "add", "--appid", APPID, "--secret", SECRET,
                    "--data-dir", str(copy)], capture_output=True)  # fmt: skip
    key = subprocess.run([*up, "apps", "ingest-key", "--appid", APPID, "--data-dir", str(copy)],
                         check=True, capture_output=True, text=True).stdout.split()[-1]  # fmt: skip
    bodies = [_live_bodies(users, seed) for seed in range(senders)]
    lat: list[float] = []
    acked = [0] * senders
    env = {"USERPORTRAIT_METRICS_OPEN": "true"}
    try:
        with server(copy, live=True, env=env) as (url, pid), httpx.Client(base_url=url) as c:
            before = _scrape(c)
            start = time.perf_counter()
            stop = start + seconds

            def send(w: int) -> None:
                head = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
                with httpx.Client(base_url=url, timeout=120, headers=head) as s:
                    i = 0
                    while time.perf_counter() < stop:
                        t = time.perf_counter()
                        r = s.post("/v1/events", content=bodies[w][i % len(bodies[w])])
                        lat.append(time.perf_counter() - t)
                        assert r.status_code == 200 and r.json()["accepted"] == 1000, r.text
                        acked[w] += 1000
                        i += 1

            threads = [threading.Thread(target=send, args=(w,)) for w in range(senders)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            took = time.perf_counter() - start
            during = _scrape(c)
            t = time.perf_counter()
            while _scrape(c)["pending_events"] > 0:
                time.sleep(0.1)
            drain = time.perf_counter() - t
            after = _scrape(c)
            hwm = _proc_hwm(pid)
    finally:
        shutil.rmtree(copy, ignore_errors=True)

    def flushes(m: dict[str, float]) -> tuple[int, float, dict[str, int]]:
        buckets = {k.split("@")[1]: int(v - before.get(k, 0)) for k, v in m.items() if "@" in k}
        return (int(m["flush_duration_seconds_count"] - before["flush_duration_seconds_count"]),
                m["flush_duration_seconds_sum"] - before["flush_duration_seconds_sum"],
                buckets)  # fmt: skip

    n, total, buckets = flushes(during)
    n_all, total_all, buckets_all = flushes(after)
    return {"events": sum(acked), "s": took, "per_s": sum(acked) / took, "lat": lat,
            "pending_at_end": during["pending_events"], "drain_s": drain,
            "flushes": n, "flush_mean": total / max(1, n), "flush_buckets": buckets,
            "flushes_all": n_all, "flush_mean_all": total_all / max(1, n_all),
            "flush_buckets_all": buckets_all, "rss_mb": hwm}  # fmt: skip


def report_live(users: int, senders: int, r: dict[str, Any]) -> None:
    lat = [x * 1000 for x in r["lat"]]

    def within(buckets: dict[str, int]) -> str:
        # The histogram's bucket that holds the slowest flush: an upper bound on it.
        top = next((le for le, k in sorted(buckets.items(), key=lambda kv: float(kv[0]))
                    if k == max(buckets.values())), "?")  # fmt: skip
        return f"all ≤ {top} s" if max(buckets.values(), default=0) else "none"

    print(f"\nlive ingestion, {users:,} users (40 days), {senders} senders, "
          f"{r['s']:.0f} s — {dt.date.today()}, {platform.node()}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}\n")  # fmt: skip
    print("| figure | measured | target |\n|---|---:|---|")
    print(f"| events/s acknowledged (durable), batches of 1,000 | {r['per_s']:,.0f} "
          f"({r['events']:,} in {r['s']:.1f} s) | ≥ 50,000 |")  # fmt: skip
    print(f"| batch round trip | p50 {pct(lat, 0.5):.0f} ms, p99 {pct(lat, 0.99):.0f} ms, "
          f"max {max(lat):.0f} ms | |")  # fmt: skip
    print(f"| flushes while sending | {r['flushes']}, mean {r['flush_mean']:.2f} s, "
          f"{within(r['flush_buckets'])} | ≤ 0.5 s |")  # fmt: skip
    print(f"| pending at the last ack -> all committed | {r['pending_at_end']:,.0f} events, "
          f"{r['drain_s']:.1f} s ({r['flushes_all']} flushes in all, mean "
          f"{r['flush_mean_all']:.2f} s, {within(r['flush_buckets_all'])}) | |")  # fmt: skip
    print(f"| server peak RSS | {r['rss_mb']:.0f} MiB | |")


#: Issue 27's asks: a filter (a map click: a province, then a city), a cross-tab, a
#: comparison, and the dashboard's filter with its comparison.
SEGMENT_ASKS: dict[str, list[tuple[str, str]]] = {
    "filter province": [("filter", "province=44")],
    "filter city + gender": [("filter", "city=4403"), ("filter", "genders=2")],
    "by genders,ages": [("by", "genders,ages")],
    "by province,platforms, filtered": [("by", "province,platforms"), ("filter", "ages=4")],
    "compare": [("compare", "previous")],
    "filter + compare": [("filter", "province=44"), ("compare", "previous")],
}


def served_segments(data: Path, requests: int) -> dict[str, Any]:
    """Issue 27: compare, filter and by over HTTP, in pairs: a random window of 1-366 days
    ending on any of the 40 days or a few after, then another ask and span ending on the
    same day. ``first``: the first of each pair (its end day's head may have to be built);
    ``same end day``: the second (that head cached)."""
    import httpx

    up = [sys.executable, "-m", "userportrait"]
    # Not checked: the app may be registered by an earlier run.
    subprocess.run(
        [*up, "apps", "add", "--appid", APPID, "--secret", SECRET, "--data-dir", str(data)],
        capture_output=True,
    )
    with server(data) as (url, pid), httpx.Client(base_url=url, timeout=120) as c:
        tok = c.get("/cgi-bin/token", params={"grant_type": "client_credential",
                    "appid": APPID, "secret": SECRET}).json()["access_token"]  # fmt: skip
        rng = random.Random(27)
        asks = list(SEGMENT_ASKS)
        out: dict[str, Any] = {"first": [], "same end day": [], "kinds": {k: [] for k in asks}}
        path = f"/v1/apps/{APPID}/portrait"
        for i in range(requests):
            if i % 2 == 0:
                end = END - dt.timedelta(days=rng.randint(-5, 39))
            n = rng.randint(1, 366)
            kind = rng.choice(asks)
            params = [("begin", f"{end - dt.timedelta(days=n - 1):%Y%m%d}"),
                      ("end", f"{end:%Y%m%d}"), ("access_token", tok), *SEGMENT_ASKS[kind]]  # fmt: skip
            t = time.perf_counter()
            r = c.get(path, params=params)
            ms = (time.perf_counter() - t) * 1000
            assert r.status_code == 200 and "visit_uv" in r.json(), r.text[:300]
            out["first" if i % 2 == 0 else "same end day"].append(ms)
            out["kinds"][kind].append(ms)
        out["rss_mb"] = _proc_hwm(pid)
    return out


def report_segments(users: int, seg: dict[str, Any]) -> None:
    def line(name: str, xs: list[float]) -> str:
        if not xs:
            return f"| {name} | 0 | | |"
        return f"| {name} | {len(xs)} | {pct(xs, 0.5):.0f} ms | {pct(xs, 0.99):.0f} ms |"

    every = seg["first"] + seg["same end day"]
    print(
        f"\n{users:,} users, compare / filter / by over HTTP (peak RSS {seg['rss_mb']:.0f} MiB)\n"
    )
    print("| asks | n | p50 | p99 |\n|---|---:|---:|---:|")
    print(line("all (target p50 ≤ 50 ms, p99 ≤ 200 ms)", every))
    print(line("first of a pair (a random end day)", seg["first"]))
    print(line("second of a pair (same end day, another span and ask)", seg["same end day"]))
    for kind, xs in seg["kinds"].items():
        print(line(kind, xs))


@contextmanager
def server(
    data: Path, live: bool = False, env: dict[str, str] | None = None
) -> Iterator[tuple[str, int]]:
    """A real ``userportrait serve`` on a free port, in a subprocess: (base URL, pid)."""
    env = {**os.environ, "USERPORTRAIT_LIVE_INGEST": "true" if live else "false", **(env or {})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "userportrait", "serve", "--data-dir", str(data), "--port", "0"],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    url = None
    for line in proc.stderr:
        m = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", line)
        if m:
            url = m.group(1)
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            break
    try:
        assert url, "server did not start"
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(30)


def _proc_hwm(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


# -- main -----------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true", help="150,000 users (~1.9 M events)")
    ap.add_argument("--users", type=int, default=None, help="override the user count")
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--step", choices=sorted(STEPS))
    ap.add_argument("--src", type=Path)
    ap.add_argument("--data", type=Path)
    ap.add_argument(
        "--segments",
        action="store_true",
        help="only issue 27's compare / filter / by latency over HTTP (--requests asks)",
    )
    ap.add_argument(
        "--live",
        action="store_true",
        help="only issue 28's live ingestion over HTTP (--senders threads, --seconds)",
    )
    ap.add_argument("--senders", type=int, default=8, help="concurrent senders for --live [8]")
    ap.add_argument("--seconds", type=float, default=20, help="how long --live sends [20]")
    args = ap.parse_args()
    if args.step:
        from userportrait.runtime import tune_process

        tune_process()  # as the CLI and the server do when they start
        result = STEPS[args.step](args.src, args.data)
        # VmHWM, not ru_maxrss: the latter starts from the parent's RSS at fork.
        result["rss_mb"] = _proc_hwm(os.getpid())
        # CPU seconds of the process (all threads): steadier than wall time when other
        # jobs share the cores, and wall / CPU shows how much of 2 cores a step used.
        usage = resource.getrusage(resource.RUSAGE_SELF)
        result["cpu_s"] = usage.ru_utime + usage.ru_stime
        print(json.dumps(result))
        return
    users = args.users or (150_000 if args.small else 3_000_000)
    data = CACHE / f"u{users}-data"
    print(f"bench: {users:,} users, data in {data}", file=sys.stderr)
    if args.live:  # a cached store is enough (its generated input may be gone)
        if not (data / "catalog.sqlite").exists():
            run_step("ingest", inputs(users)[0], data)
        report_live(users, args.senders, live(data, args.senders, args.seconds))
        return
    base, extra = inputs(users)
    if args.segments:
        if not (data / "catalog.sqlite").exists():
            run_step("ingest", base, data)
        report_segments(users, served_segments(data, args.requests))
        return
    r: dict[str, dict[str, Any]] = {}
    r["decode"] = run_step("decode", base, data, repeat=3)
    r["ingest_lake_only"] = run_step("ingest_lake_only", base, data)
    r["ingest"] = run_step("ingest", base, data)
    if importlib.util.find_spec("chdb"):  # the `bench` extra: pip install -e '.[bench]'
        r["clickhouse"] = run_step("clickhouse", base, data)
        r["answers"] = run_step("answers", base, data)
        for window, answer in r["answers"]["answers"].items():
            if r["clickhouse"]["answers"][window] != answer:
                raise SystemExit(f"MISMATCH: ClickHouse's {window} differs from the store's")
        windows = ", ".join(r["answers"]["answers"])
        print(f"  answers: ClickHouse == store ({windows})", file=sys.stderr)
    else:
        print("  ClickHouse not measured: pip install -e '.[bench]' (chdb)", file=sys.stderr)
    r["naive"] = run_step("naive", base, data)
    r["cold"] = run_step("cold", base, data, repeat=3)
    r["lookup"] = run_step("lookup", base, data, repeat=3)
    for name in ("cold", "lookup"):
        if r[name]["answer"] != r["naive"]["answer"]:
            raise SystemExit(f"MISMATCH: {name} differs from the naive baseline")
    print("  answers: store == naive baseline (30-day window)", file=sys.stderr)
    try:
        import userportrait.app  # noqa: F401

        http = served(data, args.requests)
    except ImportError:
        http = {}
    cli = {
        "standard": sorted(cli_time(data, 30, END) for _ in range(3))[1],
        "odd": sorted(cli_time(data, 23, END - dt.timedelta(days=3)) for _ in range(3))[1],
    }
    sizes = state_bytes(data)
    r["flush"] = run_step("flush", base, data)
    r["flush_busy"] = run_step("flush_busy", busy_day(base, 14 * users // 3), data)
    r["rebuild"] = run_step("rebuild", base, data)
    r["add_day"] = run_step("add_day", extra, data, repeat=5)
    r["forget"] = run_step("forget", base, data, repeat=3)
    report(users, r, http, cli, sizes)


def report(
    users: int,
    r: dict[str, dict[str, Any]],
    http: dict[str, Any],
    cli: dict[str, float],
    sizes: dict[str, float],
) -> None:
    ev = r["ingest"]["events"]
    rows = [
        ("bulk ingest, lake + state (`ingest_file`)", r["ingest"], "≤ 15× decode"),
        ("  of which lake only (state update off)", r["ingest_lake_only"], ""),
        ("DuckDB decoding every value of the raw file", r["decode"], "baseline"),
        *(
            [
                (
                    f"ClickHouse (chDB) loading the same file into MergeTree ORDER BY (appid, "
                    f"openid, day), normalised alike ({r['clickhouse']['parts']} parts, "
                    f"{r['clickhouse']['bytes'] / 2**20:,.0f} MiB)",
                    r["clickhouse"],
                    "baseline",
                )
            ]
            if "clickhouse" in r
            else []
        ),  # fmt: skip
        ("30-day portrait, naive one-query DuckDB (`sql`)", r["naive"], "baseline"),
        ("30-day portrait from the day partitions (path beyond 366 days)", r["cold"], ""),
        ("30-day portrait, store, fresh process, span histograms", r["lookup"], ""),
        (
            f"live flush: 1,000 events for the newest day (~{r['ingest']['events'] // 40:,} "
            f"events), median of {r['flush']['n']}",
            r["flush"],
            "≤ 0.5 s",
        ),  # fmt: skip
        (
            f"the same after today grew by {r['flush_busy']['added']:,} events "
            f"(in {r['flush_busy']['grown_s']:.0f} s), median of {r['flush_busy']['n']}",
            r["flush_busy"],
            "≤ 0.5 s",
        ),  # fmt: skip
        ("full rebuild of the state from the lake", r["rebuild"], "baseline"),
        (
            f"add one day ({r['add_day']['events']:,} events) to the lake + state",
            r["add_day"],
            "≤ 1/15 bulk ingest",
        ),  # fmt: skip
        (
            f"forget {r['forget']['users']:,} users ({r['forget']['events']:,} events in "
            f"{r['forget']['files']:,} files): lake rewrite "
            f"{r['forget']['lake_s']:.2f} s + the app's state patched {r['forget']['state_s']:.2f} s",
            r["forget"],
            "≤ add one day",
        ),  # fmt: skip
    ]
    print(f"\n{ev:,} events, {users:,} users, 40 days, one appid — "
          f"{dt.date.today()}, {platform.node()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}\n")  # fmt: skip
    print("| step | time | peak RSS | target |")
    print("|---|---:|---:|---|")
    for name, res, target in rows:
        runs = res.get("runs", [])
        spread = f" (median of {len(runs)}: {' / '.join(f'{t:.2f}' for t in runs)})"
        time_s = f"{res['s']:.2f} s" + (spread if len(runs) > 1 else "")
        if "p90" in res:
            time_s += f" (p90 {res['p90']:.2f}, max {res['max']:.2f})"
        if res.get("folds"):  # beside the flushes, in the folder's child process
            time_s += f"; folds beside them: {', '.join(f'{t:.2f}' for t in res['folds'])} s"
            during = ", ".join(f"{t:.2f}" for t in res["during_folds"])
            time_s += f", flushes meanwhile: {during or 'none'} s"
        print(f"| {name} | {time_s} | {res['rss_mb']:.0f} MiB | {target} |")
    if http:
        for label, xs in (("random windows of 1-366 days, each once", http["first"]),
                          ("each 1/7/30-day window once", http["repeat"])):  # fmt: skip
            if xs:
                print(f"| served over HTTP, {label} ({len(xs)} requests) | "
                      f"p50 {pct(xs, 0.5):.1f} ms, p99 {pct(xs, 0.99):.1f} ms, "
                      f"mean {statistics.mean(xs):.1f} ms | server {http['rss_mb']:.0f} MiB | "
                      "p50 ≤ 20 ms, p99 ≤ 100 ms |")  # fmt: skip
    else:
        print("| served over HTTP | not measured: userportrait.app is missing | | |")
    if "clickhouse" in r:
        took = r["clickhouse"]["query_s"]
        warm = sorted(t["warm"] for t in took.values())
        cold = ", ".join(f"{t['cold']:.1f}" for t in took.values())
        print(f"| ClickHouse answering the same windows ({', '.join(took)}), warm | "
              f"median {statistics.median(warm):.2f} s, max {warm[-1]:.2f} s (cold: "
              f"{cold} s); answers equal "
              "the store's | | baseline |")  # fmt: skip
    print(
        f"| fresh CLI process, 30-day window | {cli['standard']:.2f} s (median of 3) | | ≤ 0.3 s |"
    )
    print(f"| fresh CLI process, 23-day window | {cli['odd']:.2f} s (median of 3) | | ≤ 0.5 s |")
    print(f"| state: span histograms per end day | {sizes['per_end_day'] / 2**20:.2f} MiB | | |")
    print(
        f"| state: all files per user | {sizes['per_user']:.0f} B ({sizes['total'] / 2**20:.0f} MiB) | | |"
    )
    ratios = [
        ("ingest / decode", r["ingest"]["s"] / r["decode"]["s"], "≤ 12"),
        ("naive / fresh CLI 23-day", r["naive"]["s"] / cli["odd"], "≥ 50"),
        ("bulk ingest / add-a-day", r["ingest"]["s"] / r["add_day"]["s"], "≥ 15"),
        ("forget 1,000 users / add-a-day", r["forget"]["s"] / r["add_day"]["s"], "≤ 1"),
    ]
    if "clickhouse" in r:
        ch = r["clickhouse"]
        ratios.insert(1, ("ingest / ClickHouse load", r["ingest"]["s"] / ch["s"], "≤ 1"))
        ratios.insert(2, ("ClickHouse load / decode", ch["s"] / r["decode"]["s"], ""))
        if http:
            warm = statistics.median(t["warm"] for t in ch["query_s"].values())
            p50 = pct(http["first"], 0.5) / 1000
            ratios.append(("ClickHouse warm window / served p50", warm / p50, ""))
    if http:
        p50 = pct(http["first"], 0.5) / 1000
        ratios.insert(2, ("naive / served p50 (random windows)", r["naive"]["s"] / p50, "≥ 50"))
    print("\n| ratio | measured | target |\n|---|---:|---|")
    for name, value, target in ratios:
        print(f"| {name} | {value:.1f} | {target} |")


if __name__ == "__main__":
    main()
