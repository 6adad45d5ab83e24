"""Building day partitions from the lake with DuckDB (the SQL of the incremental store).

A day partition holds, per user active that day, the day's winning value id of each
dimension: the latest event carrying it, ties to the larger id (devices: the larger model
string), packed into one integer key so that ``max`` picks it. New users get dense uids
(``users/uV_N.parquet``, append-only) and new device models ids (``devices.bV.parquet``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from userportrait.portrait.dims import DIMS, Dim
from userportrait.sqltext import shanghai_time_of_day_sql, sql_list, sql_str
from userportrait.store.durable import atomic_write
from userportrait.store.lake import DIM_COLUMNS, Lake
from userportrait.store.state.cores import on_two_cores
from userportrait.store.state.days import VALUE_DTYPES, day_number
from userportrait.store.state.manifest import AppState
from userportrait.store.state.prefetch import Prefetched
from userportrait.store.state.winners import DailyMax, packed
from userportrait.store.windows import DayPart, IntArray

#: Events per DuckDB pass when building day partitions (bounds memory): a day of more
#: comes in as many slices of its users as bound a pass to about that many.
CHUNK_EVENTS = 4_000_000
MAX_SLICES = 16
#: The packed winner keys (also built by Spark in ``spark/partitions.py``).
ID_BITS = 14  # value ids < 16384 (city codes top out at 9999)
RANK_BITS = 26  # device ranks < 2^26; with 2^37 us per day the key stays < 2^63
_BITS: dict[Dim, int] = {d: RANK_BITS if d == "devices" else ID_BITS for d in DIMS}


class PartitionBuilder:
    """Day partitions of one appid at catalog version ``version``; extends ``app``'s user
    and device dictionaries as it meets new ones. Use as a context manager."""

    def __init__(self, lake: Lake, appid: str, app: AppState, app_dir: Path, version: int) -> None:
        self.lake = lake
        self.appid = appid
        self.app = app
        self.dir = app_dir
        self.version = version
        self.n_devices = self.n_loaded = 0
        self._by_hash = False  # (set for each build)

    def __enter__(self) -> PartitionBuilder:
        self.con = self.lake.connect()
        try:
            self._load_devices()
        except BaseException:
            self.con.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.con.close()

    def _load_devices(self) -> None:
        con = self.con
        if self.app.devices:
            path = sql_str(str(self.dir / self.app.devices))
            con.execute(
                "CREATE TEMP TABLE devices AS SELECT device, id "
                f"FROM read_parquet({path}, hive_partitioning=false)"
            )
        else:
            con.execute("CREATE TEMP TABLE devices (device VARCHAR, id INTEGER)")
        self.n_devices = self.n_loaded = _scalar(con, "SELECT count(*) FROM devices")

    def build(
        self, days: list[str], after: int | None = None, *, keyed: str | None = None
    ) -> Iterator[DayPart]:
        """Day partitions of ``days`` in day order, rebuilt from all their lake files up to
        the version (or from the files of batches ``after`` a version only: what a flush
        added). Only the day ``keyed`` (the newest, which flushes merge into) gets its
        winners' times (kept for it alone). A day of more than ``CHUNK_EVENTS`` events comes
        in slices of its users by uid range, ascending.

        The users and devices of all the days are matched once (the dictionary grows before
        the first part comes out); then the winners are counted in passes of about
        ``CHUNK_EVENTS`` events, which bound the memory. One day of at most that many (a day
        added, a flush's batch) is one pass whose join to the dictionary is the match."""
        files: dict[str, list[str]] = {}
        rows: dict[str, int] = {}
        wanted = set(days)
        for f in self.lake.catalog.files(self.appid, upto=self.version, after=after):
            if f.day in wanted:
                files.setdefault(f.day, []).append(str(self.lake.root / f.path))
                rows[f.day] = rows.get(f.day, 0) + f.rows
        if not files:
            return
        every = [path for day in sorted(files) for path in files[day]]
        self._rank_devices(every)
        fetches: Iterator[dict[str, Any]]
        if len(files) == 1 and sum(rows.values()) <= CHUNK_EVENTS:
            # One day in one pass (a day added, a flush's batch): its events are joined to
            # the user dictionary once, and the misses are its new users.
            (day,) = files
            self._stage_day(_events(every))
            jobs: list[tuple[list[str], tuple[int, int] | None]] = [([day], None)]
            fetches = iter([self._fetch_staged()])
        else:
            self._match_users(_events(every), sorted(files)[0] if len(files) == 1 else None)
            jobs = self._passes(list(_chunks(sorted(files), rows)), rows)
            # (a pass or two: hashing the users would cost what it saves)
            self._by_hash = len(jobs) > 2 and self._hash_uids()
            fetches = (
                self._fetch(_events([p for d in chunk for p in files[d]]), users)
                for chunk, users in jobs
            )
        self._reducer = DailyMax(self.app.n_users, list(DIMS))
        # DuckDB fetches the next chunk while numpy reduces this one (a thread of its own,
        # which the ``with`` stops before the connection can close).
        keyed_day = day_number(keyed) if keyed is not None else None
        with Prefetched(fetches, depth=1) as fetched:
            for i, ((chunk, users), columns) in enumerate(zip(jobs, fetched, strict=True)):
                more = users is not None and i + 1 < len(jobs) and jobs[i + 1][0] == chunk
                for part in self._winners(columns, [day_number(d) for d in chunk], keyed_day):
                    yield dataclasses.replace(part, more=more) if more else part

    def _passes(
        self, chunks: list[list[str]], rows: dict[str, int]
    ) -> list[tuple[list[str], tuple[int, int] | None]]:
        """The DuckDB passes over ``chunks``: (its days, the uid range of a slice or None)."""
        jobs: list[tuple[list[str], tuple[int, int] | None]] = []
        for chunk in chunks:
            k = 1
            if len(chunk) == 1:
                k = min(-(-rows[chunk[0]] // CHUNK_EVENTS), MAX_SLICES)  # too large for a pass
            if k == 1:
                jobs.append((chunk, None))
                continue
            cuts = self.con.execute(
                "SELECT quantile_disc(uid, $1::DOUBLE[]) FROM uids", [[i / k for i in range(1, k)]]
            ).fetchall()[0][0]
            bounds = [0, *sorted({int(c) for c in cuts or [] if c}), self.app.n_users]
            jobs += [(chunk, (lo, hi)) for lo, hi in zip(bounds, bounds[1:], strict=False)]
        return jobs

    def _rank_devices(self, files: list[str]) -> None:
        """Tables ``drank`` (the devices of ``files`` ranked in string order, so that "latest
        ts, then the larger model" packs into one integer like the id dimensions: a struct
        max costs 2x) and ``_device_ids`` (rank -> device id, 0 for rank 0: no device; new
        models get the next ids)."""
        con = self.con
        con.execute(
            "CREATE OR REPLACE TEMP TABLE drank AS SELECT device, "
            "CAST(row_number() OVER (ORDER BY device) AS BIGINT) AS r FROM (SELECT DISTINCT "
            f"device FROM read_parquet({sql_list(files)}, hive_partitioning=false) "
            "WHERE device IS NOT NULL)"
        )
        con.execute(
            f"INSERT INTO devices SELECT device, CAST({self.n_devices} + row_number() OVER"
            " (ORDER BY device) AS INTEGER) FROM drank d"
            " WHERE NOT EXISTS (SELECT 1 FROM devices x WHERE x.device = d.device)"
        ).fetchall()
        self.n_devices = _scalar(con, "SELECT count(*) FROM devices")
        pairs = con.sql("SELECT k.r, x.id FROM drank k JOIN devices x USING (device)").fetchnumpy()
        ranks = np.asarray(pairs["r"])
        self._device_ids = np.zeros(int(ranks.max()) + 1 if len(ranks) else 1, np.int32)
        self._device_ids[ranks] = np.asarray(pairs["id"])

    def _fetch(self, events: str, users: tuple[int, int] | None = None) -> dict[str, Any]:
        """One row per event of ``events`` (of the uids in ``[lo, hi)`` of ``users``): day,
        uid, time of day and the value ids."""
        # fetchnumpy, not Arrow: pyarrow's to_numpy imports pandas (0.5-0.9 s per process).
        return dict(
            self.con.sql(
                f"SELECT {event_row()} FROM {events} e JOIN uids u "
                + ("ON u.h = hash(e.openid) " if self._by_hash else "USING (openid) ")
                + "LEFT JOIN drank k ON k.device = e.device"
                + (f" WHERE u.uid >= {users[0]} AND u.uid < {users[1]}" if users else "")
            ).fetchnumpy()
        )

    def _stage_day(self, events: str) -> None:
        """Table ``ev``: ``_fetch``'s row for every event of ``events`` (one day's), each
        with its uid from one join to the user dictionary; users it misses get the next
        uids, in openid order (as ``_match_users`` numbers a day's new users)."""
        con = self.con
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE ev AS SELECT {event_row()}, "
            "CASE WHEN u.uid IS NULL THEN e.openid END AS openid "  # (only the misses')
            f"FROM {events} e LEFT JOIN {self._dictionary()} u USING (openid) "
            "LEFT JOIN drank k ON k.device = e.device"
        )
        con.execute(
            "CREATE OR REPLACE TEMP TABLE fresh AS SELECT openid, CAST("
            f"{self.app.n_users} + row_number() OVER (ORDER BY openid) - 1 AS UINTEGER) AS uid "
            f"FROM (SELECT DISTINCT openid FROM ev WHERE uid IS NULL)"
        )
        if self._append_fresh():
            con.execute(
                "UPDATE ev SET uid = f.uid FROM fresh f "
                "WHERE ev.uid IS NULL AND ev.openid = f.openid"
            )

    def _fetch_staged(self) -> dict[str, Any]:
        """``_fetch``'s columns of table ``ev`` (``_stage_day``)."""
        return dict(self.con.sql("SELECT * EXCLUDE (openid) FROM ev").fetchnumpy())

    def _winners(
        self, columns: dict[str, Any], days: list[int], keyed: int | None
    ) -> Iterator[DayPart]:
        """The day partitions of ``days`` from their events' rows (``_fetch``)."""
        return day_parts(columns, days, keyed, self._reducer, self._device_ids)

    def _match_users(self, events: str, only_day: str | None = None) -> None:
        """Table ``uids``: the uid of every user of ``events``; users not in the dictionary
        get the next uids, in the order of their first day here, then openid (``only_day``:
        the one day of ``events``, every user's first here, so distinct openids do)."""
        con = self.con
        # One pass over the user dictionary (DuckDB builds the hash table on the smaller
        # side, so the 3 M known users are streamed from their Parquet parts).
        users = (
            f"SELECT openid, DATE {sql_str(only_day)} AS first FROM (SELECT DISTINCT openid FROM {events})"
            if only_day
            else f"SELECT openid, min(day) AS first FROM {events} GROUP BY openid"
        )
        con.execute(
            "CREATE OR REPLACE TEMP TABLE uids AS SELECT s.openid, s.first, u.uid FROM "
            f"({users}) s LEFT JOIN {self._dictionary()} u USING (openid)"
        )
        con.execute(
            "CREATE OR REPLACE TEMP TABLE fresh AS SELECT openid, CAST("
            f"{self.app.n_users} + row_number() OVER (ORDER BY first, openid) - 1 AS UINTEGER) "
            "AS uid FROM uids WHERE uid IS NULL"
        )
        if self._append_fresh():
            con.execute(
                "CREATE OR REPLACE TEMP TABLE uids AS SELECT openid, uid FROM uids "
                "WHERE uid IS NOT NULL UNION ALL SELECT openid, uid FROM fresh"
            )

    def _dictionary(self) -> str:
        """SQL: the app's user dictionary (openid, uid), from its Parquet parts."""
        if not self.app.users:
            return "(SELECT NULL::VARCHAR AS openid, NULL::UINTEGER AS uid WHERE false)"
        listing = ", ".join(sql_str(str(self.dir / f)) for f in self.app.users)
        return f"read_parquet([{listing}], hive_partitioning=false)"

    def _append_fresh(self) -> int:
        """Write table ``fresh`` (new users and their uids) as the dictionary's next part;
        how many it holds."""
        added = _scalar(self.con, "SELECT count(*) FROM fresh")
        if added:
            n = self.app.n_users
            part = f"users/u{self.version}_{n}.parquet"
            # (in no order: the parts are only ever joined on the openid)
            self.con.execute(
                f"COPY fresh TO {sql_str(str(self.dir / part))} (FORMAT parquet, COMPRESSION zstd)"
            )
            self.app.users.append(part)
            self.app.n_users = n + added
        return added

    def _hash_uids(self) -> bool:
        """Whether the events can find their uid by the openid's 64-bit hash (column ``h``
        of ``uids``): an integer join, a third less of a per-event pass than hashing and
        comparing strings, but a table to hash first. Not when two of these users share a
        hash; every event's openid is among them, so a hash unique among them is exact."""
        con = self.con
        con.execute("CREATE OR REPLACE TEMP TABLE uids AS SELECT *, hash(openid) AS h FROM uids")
        return bool(con.execute("SELECT count(DISTINCT h) = count(*) FROM uids").fetchall()[0][0])

    def device_names(self, ids: list[int]) -> dict[int, str]:
        """Model names of device ids (to break ties between two flushes' winners)."""
        if not ids:
            return {}
        rows = self.con.execute(
            f"SELECT id, device FROM devices WHERE id IN ({', '.join(map(str, ids))})"
        ).fetchall()
        return {int(i): str(name) for i, name in rows}

    def finish(self) -> None:
        """Write the device dictionary if this build added devices (else the file named
        now stays: one file fewer per app updated)."""
        con = self.con
        if self.n_devices == self.n_loaded:
            return
        self.app.devices = f"devices.b{self.version}.parquet"
        table = con.sql("SELECT device, id FROM devices ORDER BY id").to_arrow_table()
        atomic_write(self.dir / self.app.devices, lambda fh: pq.write_table(table, fh))


def day_parts(
    columns: dict[str, Any],
    days: list[int],
    keyed: int | None,
    reducer: DailyMax,
    device_ids: IntArray,
) -> Iterator[DayPart]:
    """The day partitions of ``days`` from their events' rows (``event_row``: day, uid,
    time of day and value ids; devices as ranks, ``device_ids`` their ids), reduced in
    numpy, users in uid order; the day ``keyed``, if among them, with its winners' times."""
    day_col = np.asarray(columns.pop("day"))
    for day in days:
        if len(days) > 1:
            rows = np.flatnonzero(day_col == day)
            cols = {name: np.asarray(col)[rows] for name, col in columns.items()}
        else:
            cols = {name: np.asarray(col) for name, col in columns.items()}
        if not len(cols["uid"]):
            continue
        shifted = {bits: cols["t"] << bits for bits in set(_BITS.values())}
        uid, best = reducer.reduce(cols.pop("uid"), _keys_of(cols, shifted))
        del cols, shifted
        yield DayPart(day, uid, *_unpacked(best, device_ids, with_times=day == keyed))


def _unpacked(
    best: dict[Dim, IntArray], device_ids: IntArray, *, with_times: bool
) -> tuple[dict[Dim, IntArray], dict[Dim, IntArray] | None]:
    """The value ids (device ids) of the winners' keys, and their times if asked."""
    values: dict[Dim, IntArray] = {}
    times: dict[Dim, IntArray] = {}

    def unpack(d: Dim) -> None:
        low = _low(best[d], d)
        values[d] = device_ids[low] if d == "devices" else low.astype(VALUE_DTYPES[d])
        if with_times:  # the key's high bits (-1 stays -1: no value)
            times[d] = best[d] >> _BITS[d]

    on_two_cores(unpack, DIMS, rows=len(best[DIMS[0]]))
    return {d: values[d] for d in DIMS}, {d: times[d] for d in DIMS} if with_times else None


def event_row() -> str:
    """SQL: the row of an event ``e`` (its user ``u``, its device's rank ``k``) that numpy
    reduces: day, uid, time of day and the value ids."""
    # Latest event carrying the attribute wins; at equal ts the larger id (one BIGINT key:
    # microseconds since the day's midnight, < 2^37, then the id or the device's rank).
    # The openid becomes the integer uid in a join, so numpy never sees text.
    ids = "".join(
        f", CAST(COALESCE(e.{col}, -1) AS SMALLINT) AS {dim}"
        for dim, col in DIM_COLUMNS.items()
        if dim != "devices"
    )
    return (
        "CAST(e.day - DATE '1970-01-01' AS INTEGER) AS day, u.uid, "
        f"CAST({shanghai_time_of_day_sql('e.ts', 'e.day')} AS BIGINT) AS t{ids}, "
        "CAST(COALESCE(k.r, -1) AS INTEGER) AS devices"
    )


def _keys_of(cols: Mapping[str, Any], shifted: Mapping[int, IntArray]) -> Callable[[Dim], IntArray]:
    """The packed winner keys of a dimension's events (``shifted``: the times shifted for
    each key width), made when ``DailyMax`` asks, in the thread that reduces them."""
    return lambda d: packed(shifted[_BITS[d]], cols[d])


def _low(keys: IntArray, d: Dim) -> IntArray:
    """The value ids (device ranks) of packed keys; 0 for no value (-1)."""
    return np.where(keys >= 0, keys & ((1 << _BITS[d]) - 1), 0)


def _events(files: list[str]) -> str:
    """SQL: the lake files ``files`` with their day."""
    return (
        f"read_parquet({sql_list(files)}, hive_partitioning=true, "
        "hive_types={'appid': VARCHAR, 'day': DATE})"
    )


def _chunks(days: list[str], rows: dict[str, int]) -> Iterator[list[str]]:
    """``days`` in runs of about ``CHUNK_EVENTS`` events (``rows``: events per day)."""
    chunk: list[str] = []
    size = 0
    for day in days:
        if chunk and size + rows[day] > CHUNK_EVENTS:
            yield chunk
            chunk, size = [], 0
        chunk.append(day)
        size += rows[day]
    if chunk:
        yield chunk


def _scalar(con: Any, sql: str) -> int:
    # fetchall, not fetchone: DuckDB 2 keeps a half-read result open on the connection.
    return int(con.execute(sql).fetchall()[0][0])
