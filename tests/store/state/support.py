"""For the state's tests: random day partitions (the sizes of a small app's values) and a
generated data set of two apps over 40 days, its answers and its late events."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from userportrait.engine import get_engine
from userportrait.portrait.dims import DIMS, Dim
from userportrait.portrait.query import PortraitQuery
from userportrait.portrait.service import portrait
from userportrait.store.lake import Lake
from userportrait.store.state import STANDARD_LENGTHS, VALUE_DTYPES, StateStore
from userportrait.store.windows import DayPart
from userportrait.synthetic.generate import GeneratorConfig

SIZES: dict[Dim, int] = {
    "province": 5,
    "city": 9,
    "genders": 3,
    "platforms": 4,
    "ages": 7,
    "devices": 6,
}


def random_days(rng: np.random.Generator, n_users: int, count: int) -> list[DayPart]:
    """``count`` ascending day partitions with gaps from 1 to 300 days."""
    parts = []
    t = 1000
    for _ in range(count):
        t += int(rng.choice([1, 1, 2, 6, 30, 40, 300]))
        uid = np.sort(rng.choice(n_users, size=int(rng.integers(5, 80)), replace=False))
        values = {d: rng.integers(0, SIZES[d], len(uid)).astype(VALUE_DTYPES[d]) for d in DIMS}
        parts.append(DayPart(t, uid.astype(np.uint32), values))
    return parts


CONFIG = GeneratorConfig(users=1200, days=40, end=dt.date(2026, 3, 31), apps=2, seed=5)
END, START = CONFIG.end, CONFIG.start
D = dt.timedelta


def standard_windows() -> list[tuple[dt.date, dt.date]]:
    out = [(END - D(n - 1), END) for n in STANDARD_LENGTHS]
    out += [(END - D(20), END - D(10)), (START, START + D(3)), (START - D(3), START + D(29))]
    out += [(END - D(2), END + D(4)), (START + D(12), START + D(12))]
    return out


def answers(lake: Lake, engine: str, windows: list[tuple[dt.date, dt.date]]) -> list[Any]:
    eng = get_engine(engine, lake)
    try:
        return [portrait(PortraitQuery(a, b, e), eng) for a in CONFIG.appids for b, e in windows]
    finally:
        eng.close()


def all_standard(lake: Lake) -> dict[tuple[str, int, int], Any]:
    """Every 1/7/30-day window ending on every day from START to END + 30, per appid."""
    store = StateStore(lake)
    out = {}
    for appid in CONFIG.appids:
        for n in STANDARD_LENGTHS:
            for k in range(CONFIG.days + 30):
                end = START + D(k)
                q = PortraitQuery(appid, end - D(n - 1), end)
                out[(appid, n, k)] = store.portrait_after_catch_up(q)
    return out


def split_days(src: Path, out: Path) -> list[Path]:
    """One Parquet file per Shanghai day of ``src`` (the generator writes ts in UTC)."""
    table = pq.read_table(src)
    shanghai = pc.assume_timezone(
        pc.local_timestamp(table.column("ts").cast(pa.timestamp("ms", tz="Asia/Shanghai"))),
        "UTC",
    )
    days = pc.floor_temporal(shanghai, unit="day").cast(pa.timestamp("ms")).cast(pa.date32())
    table = table.append_column("_day", days)
    files = []
    for day in sorted(set(days.to_pylist())):
        part = table.filter(pc.equal(table.column("_day"), pa.scalar(day, pa.date32())))
        path = out / f"{day.isoformat()}.parquet"
        pq.write_table(part.drop_columns(["_day"]), path)
        files.append(path)
    return files


def late_events() -> list[dict[str, Any]]:
    """Late events on early days for users first seen later, with new latest values."""
    a, b = CONFIG.appids
    early = (START + D(3)).isoformat()
    late = (END - D(1)).isoformat()
    return [
        # o000000001.. exist in the data; these make some of them not-new and move them.
        {"appid": a, "openid": f"o{u:09d}", "ts": f"{early}T08:00:00+08:00", "city": "深圳"}
        for u in range(0, 1200, 37)
    ] + [
        {"appid": b, "openid": f"o{u:09d}", "ts": f"{late}T23:59:59+08:00", "gender": "f",
         "platform": "ohos", "device": "ZZZ Phone", "age": 70, "province": "西藏"}
        for u in range(0, 1200, 41)
    ] + [{"appid": a, "openid": "brand-new", "ts": f"{START - D(10)}T12:00:00+08:00"}]  # fmt: skip
