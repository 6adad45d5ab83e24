"""Profile files in the lake (docs/storage.md): written durably, committed through the catalog.

Layout (docs/storage.md): ``profiles/appid=A/bN_KEY.parquet``, one file per (batch,
appid), every accepted record of the batch as received (no de-duplication at write: the
latest record per user is chosen when reading, by ``updated_at``, then batch, then
position in the batch, ``seq``). A file is flushed to disk and renamed into place before
the catalog names it, so a profile batch is durable once ``write_profiles`` returns.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from functools import partial
from typing import Final

import pyarrow as pa
import pyarrow.parquet as pq

from userportrait.portrait.profiles import Profile
from userportrait.store.catalog import ProfileFile
from userportrait.store.durable import atomic_write, fsync_tree
from userportrait.store.lake import Lake

PROFILE_SCHEMA: Final = pa.schema(
    [
        ("openid", pa.string()),
        ("updated_at", pa.timestamp("us", tz="UTC")),
        ("gender_id", pa.int32()),
        ("birth_date", pa.date32()),
        ("province_id", pa.int32()),
        ("city_id", pa.int32()),
        ("gender_raw", pa.string()),
        ("province_raw", pa.string()),
        ("city_raw", pa.string()),
        ("birth_raw", pa.string()),
        ("batch_id", pa.int32()),
        ("seq", pa.int32()),
    ]
)
#: The lake directory of the profile files.
PROFILES_DIR: Final = "profiles"
#: The columns of the latest profile that engines read.
PROFILE_DIMS: Final = ("province_id", "city_id", "gender_id", "birth_date")
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def write_profiles(
    lake: Lake,
    profiles: Sequence[Profile],
    source: str,
    sha256: str | None = None,
    rejected: int = 0,
) -> int | None:
    """Write and commit one batch (the caller holds the writer lock); its id, or None
    when nothing was accepted and nothing rejected."""
    if not profiles and not rejected:
        return None
    batch_id = lake.catalog.next_batch_id()
    key = uuid.uuid4().hex[:12]
    by_app: dict[str, list[tuple[int, Profile]]] = {}
    for seq, p in enumerate(profiles):
        by_app.setdefault(p.appid, []).append((seq, p))
    files: list[ProfileFile] = []
    for appid, rows in sorted(by_app.items()):
        rel = f"{PROFILES_DIR}/appid={appid}/b{batch_id}_{key}.parquet"
        target = lake.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, partial(pq.write_table, _table(rows, batch_id), compression="zstd"))
        files.append(ProfileFile(rel, appid, batch_id, len(rows)))
    fsync_tree((lake.root / f.path for f in files), lake.root)
    return lake.catalog.commit_profiles(batch_id, source, sha256, len(profiles), rejected, files)


def _table(rows: list[tuple[int, Profile]], batch_id: int) -> pa.Table:
    ps = [p for _, p in rows]
    return pa.table(
        {
            "openid": [p.openid for p in ps],
            "updated_at": [_EPOCH + dt.timedelta(microseconds=p.updated_at_us) for p in ps],
            "gender_id": [p.gender_id for p in ps],
            "birth_date": [p.birth_date for p in ps],
            "province_id": [p.province_id for p in ps],
            "city_id": [p.city_id for p in ps],
            "gender_raw": [p.gender_raw for p in ps],
            "province_raw": [p.province_raw for p in ps],
            "city_raw": [p.city_raw for p in ps],
            "birth_raw": [p.birth_raw for p in ps],
            "batch_id": [batch_id] * len(ps),
            "seq": [seq for seq, _ in rows],
        },
        schema=PROFILE_SCHEMA,
    )


def profile_paths(lake: Lake, appid: str) -> list[str]:
    """Absolute paths of ``appid``'s committed profile files, oldest batch first."""
    return [str(lake.root / f.path) for f in lake.catalog.profile_files(appid)]


def latest_profiles_sql(listing: str) -> str:
    """SQL (DuckDB and Spark alike): the latest profile per openid of the files in
    ``listing`` (a relation): by ``updated_at``, then batch, then position in the batch."""
    return (
        f"SELECT openid, {', '.join(PROFILE_DIMS)} FROM (SELECT *, row_number() OVER "
        "(PARTITION BY openid ORDER BY updated_at DESC, batch_id DESC, seq DESC) AS _rank "
        f"FROM {listing}) ranked WHERE _rank = 1"
    )
