"""The reference engine: a row-by-row Python loop over the lake, obviously correct.

It re-normalises the raw attribute strings with ``portrait/normalize.py`` rather than
trusting the ids written at ingest, so it checks the ingest join as well as the engines.
Slow by design; for tests and small data.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pyarrow.parquet as pq

from userportrait.portrait import devices, ipregion, normalize
from userportrait.portrait.counts import AudienceBuilder, CrossCounts, PortraitCounts
from userportrait.portrait.dims import ID_DIMS, UNKNOWN, Dim
from userportrait.portrait.profiles import profile_age_id
from userportrait.portrait.query import PortraitQuery
from userportrait.portrait.segments import cell, matches
from userportrait.store.lake import Lake

Latest = dict[str, tuple[Any, Any]]  # dim -> (ts, value) of the latest event carrying it


class ReferenceEngine:
    name = "reference"

    def __init__(self, lake: Lake) -> None:
        self.lake = lake

    def run_portrait(self, query: PortraitQuery) -> PortraitCounts:
        new, active = AudienceBuilder(), AudienceBuilder()
        for values, device, is_new in self._users(query):
            active.add(values, device)
            if is_new:
                new.add(values, device)
        return PortraitCounts(new=new.build(), active=active.build())

    def run_crosstab(self, query: PortraitQuery) -> CrossCounts:
        assert query.by is not None
        out = CrossCounts()
        for values, device, is_new in self._users(query):
            key = cell(query.by, {**values, "devices": device})
            out.active[key] = out.active.get(key, 0) + 1
            if is_new:
                out.new[key] = out.new.get(key, 0) + 1
        return out

    def _users(self, query: PortraitQuery) -> Iterator[tuple[dict[Dim, int], str | None, bool]]:
        """Per user active in the window and in its segment: the id values, the device
        and whether the user is new."""
        first_day: dict[str, dt.date] = {}
        latest: dict[str, Latest] = {}
        # The database ingest used (tests never replace it between ingest and query).
        ip = ipregion.ReferenceLookup(ipregion.active_db(self.lake.root))
        kept = self.lake.catalog.retention_of(query.appid)
        if kept is not None and kept.first_seen is not None:
            # Users first seen before an expiry keep that first day (store/expire.py).
            for row in pq.read_table(self.lake.root / kept.first_seen).to_pylist():
                first_day[row["openid"]] = row["first_day"]
        for f in self.lake.files(query.appid):
            day = dt.date.fromisoformat(f.day)
            for row in pq.read_table(self.lake.root / f.path).to_pylist():
                openid = row["openid"]
                if openid not in first_day or day < first_day[openid]:
                    first_day[openid] = day
                if query.begin <= day <= query.end:
                    _observe(latest.setdefault(openid, {}), row, ip)
        profiles = self._profiles(query)
        for openid, seen in latest.items():
            values: dict[Dim, int] = {d: (seen[d][1] if d in seen else UNKNOWN) for d in ID_DIMS}
            # Profiles fill gaps (docs/semantics.md): a dimension no event in the window carries.
            for dim, value in profiles.get(openid, {}).items():
                if dim not in seen and value is not None:
                    values[dim] = value
            device = seen["devices"][1] if "devices" in seen else None
            # A filter keeps the users whose counted value is the filter's (docs/semantics.md).
            if matches(query.filters, {**values, "devices": device}):
                yield values, device, first_day[openid] >= query.begin

    def _profiles(self, query: PortraitQuery) -> dict[str, dict[Dim, int | None]]:
        """Per openid the values of its latest profile record, re-derived from the raw
        strings (ages: on the window's last day)."""
        best: dict[str, tuple[Any, int, int, dict[str, Any]]] = {}
        for f in self.lake.catalog.profile_files(query.appid):
            for row in pq.read_table(self.lake.root / f.path).to_pylist():
                key = (row["updated_at"], row["batch_id"], row["seq"])
                # Latest updated_at wins; at equal times the later batch, then the later record.
                if row["openid"] not in best or key > best[row["openid"]][:3]:
                    best[row["openid"]] = (*key, row)
        out: dict[str, dict[Dim, int | None]] = {}
        for openid, (*_, row) in best.items():
            province, city = normalize.resolve_region(row["province_raw"], row["city_raw"])
            out[openid] = {
                "province": province,
                "city": city,
                "genders": normalize.normalize_gender(row["gender_raw"]),
                "ages": profile_age_id(row["birth_date"], query.end),
            }
        return out

    def data_version(self) -> int | None:
        return None  # each query reads the catalog afresh: never behind it

    def close(self) -> None:
        pass


def _client(row: dict[str, Any]) -> tuple[str | None, int | None]:
    """(device, platform id) re-derived from the raw client columns (docs/ingest.md); a batch
    without client fields (or a lake file older than them) has ``device`` as sent."""
    model, brand = row.get("model_raw"), row.get("brand_raw")
    system, ua = row.get("system_raw"), row.get("ua_compact")
    device = row.get("device_raw")
    if model is None and brand is None and system is None and ua is None and device is None:
        device = row["device"]
    return (
        devices.resolve_device(device, model, brand, ua),
        devices.resolve_platform(row["platform_raw"], system, ua, brand),
    )


def _observe(seen: Latest, row: dict[str, Any], ip: ipregion.ReferenceLookup) -> None:
    province, city = normalize.resolve_region(row["province_raw"], row["city_raw"])
    if province is None and city is None:  # only then the IP's (docs/semantics.md)
        province, city = ip.region(row.get("ip_prefix"))
    device, platform = _client(row)
    values: dict[str, Any] = {
        "province": province,
        "city": city,
        "genders": normalize.normalize_gender(row["gender_raw"]),
        "platforms": platform,
        "ages": normalize.age_id(row["age"]),
        "devices": device,
    }
    ts = row["ts"]
    for dim, value in values.items():
        if value is None:
            continue
        # Latest event wins; at the same ts the larger value (id or model name) wins.
        if dim not in seen or (ts, value) > seen[dim]:
            seen[dim] = (ts, value)
