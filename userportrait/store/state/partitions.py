"""Building day partitions from the lake with DuckDB (the SQL of the incremental store).

A day partition holds, per user active that day, the day's winning value id of each
dimension: the latest event carrying it, ties to the larger id (devices: the larger model
string), packed into one integer key so that ``max`` picks it. New users get dense uids
(``users/uV_N.parquet``, append-only) and new device models ids (``devices.bV.parquet``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from userportrait.portrait.dims import DIMS, ID_DIMS
from userportrait.sqltext import shanghai_time_of_day_sql, sql_list, sql_str
from userportrait.store.durable import atomic_write
from userportrait.store.lake import DIM_COLUMNS, Lake
from userportrait.store.state.days import SQL_TYPES, VALUE_DTYPES, day_number
from userportrait.store.state.manifest import AppState
from userportrait.store.windows import DayPart

#: Events per DuckDB pass when building day partitions (bounds memory).
CHUNK_EVENTS = 4_000_000
#: The packed winner keys (also built by Spark in ``spark/partitions.py``).
ID_BITS = 14  # value ids < 16384 (city codes top out at 9999)
RANK_BITS = 26  # device ranks < 2^26; with 2^37 us per day the key stays < 2^63


class PartitionBuilder:
    """Day partitions of one appid at catalog version ``version``; extends ``app``'s user
    and device dictionaries as it meets new ones. Use as a context manager."""

    def __init__(self, lake: Lake, appid: str, app: AppState, app_dir: Path, version: int) -> None:
        self.lake = lake
        self.appid = appid
        self.app = app
        self.dir = app_dir
        self.version = version
        self.n_devices = 0

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
        self.n_devices = _scalar(con, "SELECT count(*) FROM devices")

    def build(
        self, days: list[str], after: int | None = None, *, keyed: str | None = None
    ) -> Iterator[DayPart]:
        """Day partitions of ``days`` in day order, rebuilt from all their lake files up to
        the version (or from the files of batches ``after`` a version only: what a flush
        added). Only the day ``keyed`` (the newest, which flushes merge into) gets its
        winners' times: six more columns for every day would cost a third of the build
        (they are fetched for its chunk only).

        The users and devices of all the days are matched once (the dictionary grows before
        the first part comes out); then the winners are counted in passes of about
        ``CHUNK_EVENTS`` events, which bound the memory."""
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
        self._match_users(_events(every))
        self._rank_devices(every)
        for chunk in _chunks(sorted(files), rows):
            events = _events([p for day in chunk for p in files[day]])
            yield from self._winners(events, day_number(keyed) if keyed in chunk else None)

    def _rank_devices(self, files: list[str]) -> None:
        """Tables ``drank`` (the devices of ``files`` ranked in string order, so that "latest
        ts, then the larger model" packs into one integer like the id dimensions: a struct
        max costs 2x) and ``drank_id`` (rank -> device id; new models get the next ids)."""
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
        con.execute(
            "CREATE OR REPLACE TEMP TABLE drank_id AS "
            "SELECT k.r, x.id FROM drank k JOIN devices x USING (device)"
        )

    def _winners(self, events: str, keyed: int | None) -> Iterator[DayPart]:
        """The day partitions of ``events`` (one DuckDB pass), users in uid order; the day
        ``keyed``, if among them, with its winners' times."""
        con = self.con
        # Latest event carrying the attribute wins; at equal ts the larger id (one BIGINT
        # key: microseconds since the day's midnight, < 2^37, then the id or the rank).
        # Grouped by the integer uid, not the openid: cheaper than a string key, and the
        # (day, user) rows need no join afterwards.
        rel = shanghai_time_of_day_sql("e.ts", "e.day")
        winners = ", ".join(
            f"max({rel} * {1 << ID_BITS} + e.{col}) AS {dim}"
            for dim, col in DIM_COLUMNS.items()
            if dim != "devices"
        )
        daily = (
            f"SELECT CAST(e.day - DATE '1970-01-01' AS INTEGER) AS day, u.uid, {winners}, "
            f"max({rel} * {1 << RANK_BITS} + k.r) AS drank FROM {events} e "
            "JOIN uids u USING (openid) LEFT JOIN drank k ON k.device = e.device "
            "GROUP BY e.day, u.uid"
        )
        # Each column in the dtype the day partition keeps, so numpy takes it as it is.
        values = ", ".join(
            f"CAST(COALESCE(d.{dim} % {1 << ID_BITS}, 0) AS {SQL_TYPES[dim]}) AS {dim}"
            for dim in ID_DIMS
        )
        # (one query: the (day, user) rows are sorted as they come, never stored)
        rows = f"FROM ({daily}) d LEFT JOIN drank_id x ON x.r = d.drank % {1 << RANK_BITS}"
        if keyed is not None:  # the times too (the key's high bits; -1 for none)
            values += "".join(
                f", COALESCE(d.{dim} // {1 << ID_BITS}, -1) AS {dim}_t" for dim in ID_DIMS
            )
            values += f", COALESCE(d.drank // {1 << RANK_BITS}, -1) AS devices_t"
        # fetchnumpy, not Arrow: pyarrow's to_numpy imports pandas (0.5-0.9 s per process).
        columns = con.sql(
            f"SELECT d.day, d.uid, {values}, CAST(COALESCE(x.id, 0) AS "
            f"{SQL_TYPES['devices']}) AS devices {rows} ORDER BY d.day, d.uid"
        ).fetchnumpy()
        day_col = columns["day"]
        cuts = np.flatnonzero(np.diff(day_col)) + 1
        starts = [0, *cuts.tolist()]
        stops = [*cuts.tolist(), len(day_col)]
        for a, b in zip(starts, stops, strict=True):
            if a == b:
                continue
            day = int(day_col[a])
            keys = None
            if day == keyed:
                keys = {d: columns[f"{d}_t"][a:b].astype(np.int64, copy=False) for d in DIMS}
            yield DayPart(
                day,
                columns["uid"][a:b].astype(np.uint32, copy=False),
                {d: columns[d][a:b].astype(VALUE_DTYPES[d], copy=False) for d in DIMS},
                keys,
            )

    def _match_users(self, events: str) -> None:
        """Table ``uids``: the uid of every user of ``events``; users not in the dictionary
        get the next uids, in the order of their first day here, then openid."""
        con = self.con
        # One pass over the user dictionary (DuckDB builds the hash table on the smaller
        # side, so the 3 M known users are streamed from their Parquet parts).
        if self.app.users:
            listing = ", ".join(sql_str(str(self.dir / f)) for f in self.app.users)
            known = f"read_parquet([{listing}], hive_partitioning=false)"
        else:
            known = "(SELECT NULL::VARCHAR AS openid, NULL::UINTEGER AS uid WHERE false)"
        con.execute(
            "CREATE OR REPLACE TEMP TABLE uids AS SELECT s.openid, s.first, u.uid FROM "
            f"(SELECT openid, min(day) AS first FROM {events} GROUP BY openid) s "
            f"LEFT JOIN {known} u USING (openid)"
        )
        n = self.app.n_users
        con.execute(
            "CREATE OR REPLACE TEMP TABLE fresh AS SELECT openid, CAST("
            f"{n} + row_number() OVER (ORDER BY first, openid) - 1 AS UINTEGER) AS uid "
            "FROM uids WHERE uid IS NULL"
        )
        added = _scalar(con, "SELECT count(*) FROM fresh")
        if not added:
            return
        part = f"users/u{self.version}_{n}.parquet"
        target = sql_str(str(self.dir / part))
        con.execute(
            f"COPY (SELECT * FROM fresh ORDER BY uid) TO {target} (FORMAT parquet, COMPRESSION zstd)"
        )
        self.app.users.append(part)
        self.app.n_users = n + added
        con.execute(
            "CREATE OR REPLACE TEMP TABLE uids AS SELECT openid, uid FROM uids "
            "WHERE uid IS NOT NULL UNION ALL SELECT openid, uid FROM fresh"
        )

    def device_names(self, ids: list[int]) -> dict[int, str]:
        """Model names of device ids (to break ties between two flushes' winners)."""
        if not ids:
            return {}
        rows = self.con.execute(
            f"SELECT id, device FROM devices WHERE id IN ({', '.join(map(str, ids))})"
        ).fetchall()
        return {int(i): str(name) for i, name in rows}

    def finish(self) -> None:
        """Write the device dictionary if this build added devices."""
        con = self.con
        if self.n_devices == 0:
            return
        self.app.devices = f"devices.b{self.version}.parquet"
        table = con.sql("SELECT device, id FROM devices ORDER BY id").to_arrow_table()
        atomic_write(self.dir / self.app.devices, lambda fh: pq.write_table(table, fh))


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
