"""Day partitions of many small apps built in one DuckDB pass (issue 30: a thousand apps).

``PartitionBuilder`` builds one app at a time: a DuckDB session, its device and user
dictionaries loaded, the app's files read three times (devices, users, events), a few
milliseconds of fixed cost per query. A platform's batch touches a thousand apps of a few
hundred users each, so that fixed cost, not the events, made the state update. Here the
apps of a catch-up whose touched days hold few events (``SMALL_APP_EVENTS``) are built
together, in groups of about ``partitions.CHUNK_EVENTS`` events: each query runs once for the group,
keyed by app, and numpy reduces each app's rows as ``PartitionBuilder`` does
(``partitions.day_parts``). The user and device numbering is the per-app builder's
(new users by first day then openid, new devices by model string, per app), so the state
files are the ones ``PartitionBuilder`` writes (``tests/store/state/test_batch.py``).

``AppUpdate`` takes a group's result through its ``DayPartitions`` interface (``Ready``),
so the span histograms, heads and every file of the app are written as before.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from userportrait.portrait.dims import DIMS
from userportrait.sqlrows import register_rows
from userportrait.sqltext import sql_list
from userportrait.store.durable import atomic_write
from userportrait.store.lake import DIM_COLUMNS, Lake
from userportrait.store.state import partitions
from userportrait.store.state.days import day_number
from userportrait.store.state.manifest import AppState, app_dir
from userportrait.store.state.partitions import day_parts, event_row
from userportrait.store.state.winners import DailyMax
from userportrait.store.windows import DayPart, IntArray

log = logging.getLogger("userportrait.state")

#: An app whose touched days hold at most this many events is built with others in one
#: pass; a bigger one keeps its own ``PartitionBuilder`` (its fixed cost is small beside
#: its events, and its days may need slices).
SMALL_APP_EVENTS = 100_000


@dataclass(slots=True)
class Work:
    """One app to build: its state before, its touched days, their lake files and events."""

    old: AppState
    days: set[str]
    #: Only the files of batches after this version (a live flush's, ``grows_newest``).
    after: int | None = None
    files: list[str] = field(default_factory=list)
    rows: int = 0


@dataclass(slots=True)
class Built:
    """One app's share of a group pass."""

    parts: list[DayPart]
    users_part: str | None  # the dictionary's new part (written), if it gained users
    n_users: int
    dictionary: pa.Table | None  # the whole device dictionary (device, id) by id, if any
    gained: bool  # whether the dictionary gained models


class Ready:
    """``AppUpdate``'s ``DayPartitions`` over one app's share of a group pass."""

    def __init__(self, built: Built, app: AppState, directory: Path, version: int) -> None:
        self.built = built
        self.app = app
        self.dir = directory
        self.version = version

    def __enter__(self) -> Ready:
        # The dictionary grows as ``PartitionBuilder`` grows it, before the first part.
        if self.built.users_part is not None:
            self.app.users.append(self.built.users_part)
        self.app.n_users = self.built.n_users
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def build(
        self, days: list[str], after: int | None = None, *, keyed: str | None = None
    ) -> Iterator[DayPart]:
        """The parts of ``days`` (the pass read what ``after`` asks: ``Work.after``)."""
        wanted = {day_number(d) for d in days}
        return iter([p for p in self.built.parts if p.day in wanted])

    def device_names(self, ids: list[int]) -> dict[int, str]:
        """Model names of device ids (to break ties between two flushes' winners)."""
        table = self.built.dictionary
        if table is None:
            return {}
        wanted = set(ids)
        pairs = zip(table.column("id").to_pylist(), table.column("device").to_pylist(), strict=True)
        return {int(i): str(name) for i, name in pairs if i in wanted}

    def finish(self) -> None:
        table = self.built.dictionary
        if not self.built.gained or table is None:  # no new model: the file named stays
            return
        self.app.devices = f"devices.b{self.version}.parquet"
        _write_table(self.dir / self.app.devices, table)


def group_pass(lake: Lake, version: int, group: dict[str, Work]) -> dict[str, Built]:
    """Build every touched day of the apps of ``group`` in one DuckDB session; each
    app's new users are written as its dictionary's next part."""
    root = lake.state_dir
    appids = sorted(group)
    con = lake.connect()
    try:
        register_rows(
            con,
            "apps",
            ["appid", "app", "n_users"],
            [(a, k, group[a].old.n_users) for k, a in enumerate(appids)],
            ["VARCHAR", "INTEGER", "BIGINT"],
        )
        # The columns every lake file has (files of older batches may lack newer ones).
        needed = ", ".join(f"e.{c}" for c in ("openid", "ts", "day", *DIM_COLUMNS.values()))
        events = (
            f"(SELECT {needed}, a.app FROM read_parquet({sql_list([f for a in appids for f in group[a].files])}, "
            "hive_partitioning=true, hive_types={'appid': VARCHAR, 'day': DATE}) e "
            "JOIN apps a USING (appid))"
        )
        device_ids = _devices(con, root, appids, group, events)
        _users(con, root, appids, group, events)
        rows = dict(
            con.sql(
                f"SELECT e.app, {event_row()} FROM {events} e JOIN uids u "
                "ON u.app = e.app AND u.openid = e.openid "
                "LEFT JOIN drank k ON k.app = e.app AND k.device = e.device"
            ).fetchnumpy()
        )
        fresh = _fresh_by_app(con)
        devices = _device_tables(con)
    finally:
        con.close()
    app_col = np.asarray(rows.pop("app"))
    order = np.argsort(app_col, kind="stable")
    bounds = np.searchsorted(app_col[order], np.arange(len(appids) + 1))
    out: dict[str, Built] = {}
    for k, appid in enumerate(appids):
        work = group[appid]
        at = order[bounds[k] : bounds[k + 1]]
        n_users = work.old.n_users
        users_part = None
        table = fresh.get(k)
        if table is not None and table.num_rows:
            users_part = f"users/u{version}_{n_users}.parquet"
            path = app_dir(root, appid) / users_part
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_table(path, table.cast(USERS_SCHEMA), "zstd")
            n_users += table.num_rows
        days = sorted(day_number(d) for d in work.days)
        keyed = max(day_number(d) for d in set(work.old.days) | work.days)
        columns = {name: np.asarray(col)[at] for name, col in rows.items()}
        parts = list(day_parts(columns, days, keyed, DailyMax(n_users, list(DIMS)), device_ids[k]))
        gained = k in devices["gained"]
        out[appid] = Built(parts, users_part, n_users, devices["all"].get(k), gained)
    return out


# The dictionary part as ``PartitionBuilder`` and ``spark build`` write it (DuckDB's
# ``fresh`` has no NULLs): the same file whichever builder made it.
USERS_SCHEMA = pa.schema(
    [pa.field("openid", pa.string(), nullable=False), pa.field("uid", pa.uint32(), nullable=False)]
)


def _write_table(path: Path, table: pa.Table, compression: str = "snappy") -> None:
    def write(fh: Any) -> None:
        pq.write_table(table, fh, compression=compression)

    atomic_write(path, write)


def _devices(
    con: Any, root: Path, appids: list[str], group: dict[str, Work], events: str
) -> dict[int, IntArray]:
    """Tables ``devices`` (app, device, id: every app's dictionary, new models added with
    the next ids in string order) and ``drank`` (app, device, r: the models of the events
    ranked in string order per app, as ``PartitionBuilder._rank_devices``); per app its
    rank -> device id array (0 for rank 0: no device)."""
    named = [(a, group[a].old.devices) for a in appids]
    known = [str(app_dir(root, a) / d) for a, d in named if d is not None]
    if known:
        con.execute(
            "CREATE TEMP TABLE devices AS SELECT a.app, d.device, d.id "
            f"FROM read_parquet({sql_list(known)}, hive_partitioning=true, "
            "hive_types={'appid': VARCHAR}) d JOIN apps a USING (appid)"
        )
    else:
        con.execute("CREATE TEMP TABLE devices (app INTEGER, device VARCHAR, id INTEGER)")
    con.execute(
        "CREATE TEMP TABLE drank AS SELECT app, device, CAST(row_number() OVER "
        "(PARTITION BY app ORDER BY device) AS BIGINT) AS r FROM (SELECT DISTINCT app, device "
        f"FROM {events} WHERE device IS NOT NULL)"
    )
    con.execute("CREATE TEMP TABLE had AS SELECT app, count(*) AS n FROM devices GROUP BY app")
    con.execute(
        "CREATE TEMP TABLE new_devices AS SELECT d.app, d.device, CAST(coalesce(h.n, 0) + "
        "row_number() OVER (PARTITION BY d.app ORDER BY d.device) AS INTEGER) AS id "
        "FROM drank d LEFT JOIN had h USING (app) "
        "WHERE NOT EXISTS (SELECT 1 FROM devices x WHERE x.app = d.app AND x.device = d.device)"
    )
    con.execute("INSERT INTO devices SELECT app, device, id FROM new_devices")
    pairs = con.sql(
        "SELECT k.app, k.r, x.id FROM drank k JOIN devices x USING (app, device) ORDER BY k.app"
    ).fetchnumpy()
    app, rank, ids = (np.asarray(pairs[c]) for c in ("app", "r", "id"))
    out: dict[int, IntArray] = {}
    cuts = np.searchsorted(app, np.arange(len(appids) + 1))
    for k in range(len(appids)):
        r, i = rank[cuts[k] : cuts[k + 1]], ids[cuts[k] : cuts[k + 1]]
        table = np.zeros(int(r.max()) + 1 if len(r) else 1, np.int32)
        table[r] = i
        out[k] = table
    return out


def _device_tables(con: Any) -> dict[str, Any]:
    """Per app its whole device dictionary (device, id) by id (``all``), and the apps
    that gained models (``gained``)."""
    gained = {int(r[0]) for r in con.execute("SELECT DISTINCT app FROM new_devices").fetchall()}
    return {"all": _by_app(con, "SELECT app, device, id FROM devices"), "gained": gained}


def _users(con: Any, root: Path, appids: list[str], group: dict[str, Work], events: str) -> None:
    """Table ``uids`` (app, openid, uid) of every user of the events; users not in their
    app's dictionary get its next uids in the order of their first day here, then openid
    (as ``PartitionBuilder._match_users``), listed in table ``fresh`` too."""
    parts = [str(app_dir(root, a) / p) for a in appids for p in group[a].old.users]
    dictionary = (
        f"(SELECT a.app, d.openid, d.uid FROM read_parquet({sql_list(parts)}, "
        "hive_partitioning=true, hive_types={'appid': VARCHAR}) d JOIN apps a USING (appid))"
        if parts
        else "(SELECT NULL::INTEGER AS app, NULL::VARCHAR AS openid, NULL::UINTEGER AS uid WHERE false)"
    )
    con.execute(
        "CREATE TEMP TABLE seen AS SELECT s.app, s.openid, s.first, u.uid FROM "
        f"(SELECT app, openid, min(day) AS first FROM {events} GROUP BY app, openid) s "
        f"LEFT JOIN {dictionary} u ON u.app = s.app AND u.openid = s.openid"
    )
    con.execute(
        "CREATE TEMP TABLE fresh AS SELECT s.app, s.openid, CAST(a.n_users + row_number() OVER "
        "(PARTITION BY s.app ORDER BY s.first, s.openid) - 1 AS UINTEGER) AS uid "
        "FROM seen s JOIN apps a USING (app) WHERE s.uid IS NULL"
    )
    con.execute(
        "CREATE TEMP TABLE uids AS SELECT app, openid, uid FROM seen WHERE uid IS NOT NULL "
        "UNION ALL SELECT app, openid, uid FROM fresh"
    )


def _fresh_by_app(con: Any) -> dict[int, pa.Table]:
    """Per app with new users, its dictionary's next part (openid, uid)."""
    return _by_app(con, "SELECT app, openid, uid FROM fresh", order="uid")


def _by_app(con: Any, query: str, order: str = "id") -> dict[int, pa.Table]:
    """The rows of ``query`` (an ``app`` column first) as one table per app, without it,
    ordered by ``order``. (The cuts come from DuckDB: Arrow's ``to_numpy`` would import
    pandas, 0.5 s of a fresh process.)"""
    table = con.sql(f"SELECT * FROM ({query}) ORDER BY app, {order}").to_arrow_table()
    counts = con.execute(f"SELECT app, count(*) FROM ({query}) GROUP BY app ORDER BY app")
    out: dict[int, pa.Table] = {}
    start = 0
    for app, n in counts.fetchall():
        out[int(app)] = table.slice(start, int(n)).drop_columns(["app"])
        start += int(n)
    return out


class Batches:
    """The small apps of one catch-up, built group by group as the update reaches them
    (``source``): a group's result is held until each of its apps has taken it."""

    def __init__(self, lake: Lake, version: int, order: list[str], work: dict[str, Work]):
        self.lake = lake
        self.version = version
        self.groups: dict[str, dict[str, Work]] = {}  # appid -> its group
        group: dict[str, Work] = {}
        size = 0
        for appid in order:
            if appid not in work:
                continue
            if group and size + work[appid].rows > partitions.CHUNK_EVENTS:
                group, size = {}, 0
            group[appid] = work[appid]
            size += work[appid].rows
            self.groups[appid] = group
        self.built: dict[str, Built] = {}

    def take(self, appid: str) -> Built | None:
        """``appid``'s share of its group's pass (run now if it has not run); None if the
        app is not in a group, or its group's pass failed (it is built alone then)."""
        group = self.groups.pop(appid, None)
        if group is None:
            return None
        if appid not in self.built:
            try:
                self.built.update(group_pass(self.lake, self.version, group))
            except Exception:
                log.exception(
                    "building %d apps in one pass failed; each is built alone", len(group)
                )
                for other in group:
                    self.groups.pop(other, None)
                return None
        return self.built.pop(appid)


def small_apps(lake: Lake, version: int, wanted: dict[str, Work]) -> dict[str, Work]:
    """The apps of ``wanted`` whose days to build hold at most ``SMALL_APP_EVENTS``
    events, with their lake files (a catalog query per distinct ``Work.after``)."""
    for after in {w.after for w in wanted.values()}:
        for f in lake.catalog.files(upto=version, after=after):
            work = wanted.get(f.appid)
            if work is not None and work.after == after and f.day in work.days:
                work.files.append(str(lake.root / f.path))
                work.rows += f.rows
    # (an app of more than a pass's events is built alone, in slices: ``partitions.py``)
    most = min(SMALL_APP_EVENTS, partitions.CHUNK_EVENTS)
    return {a: w for a, w in wanted.items() if w.files and w.rows <= most}
