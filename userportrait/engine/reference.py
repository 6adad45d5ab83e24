"""The reference engine: a row-by-row Python loop over the lake, obviously correct.

It re-normalises the raw attribute strings with ``portrait/normalize.py`` rather than
trusting the ids written at ingest, so it checks the ingest join as well as the engines.
Slow by design; for tests and small data.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow.parquet as pq

from userportrait.portrait import ipregion, normalize
from userportrait.portrait.counts import AudienceBuilder, PortraitCounts
from userportrait.portrait.dims import ID_DIMS, UNKNOWN, Dim
from userportrait.portrait.query import PortraitQuery
from userportrait.store.lake import Lake

Latest = dict[str, tuple[Any, Any]]  # dim -> (ts, value) of the latest event carrying it


class ReferenceEngine:
    name = "reference"

    def __init__(self, lake: Lake) -> None:
        self.lake = lake

    def run_portrait(self, query: PortraitQuery) -> PortraitCounts:
        first_day: dict[str, dt.date] = {}
        latest: dict[str, Latest] = {}
        # The database ingest used (tests never replace it between ingest and query).
        ip = ipregion.ReferenceLookup(ipregion.active_db(self.lake.root))
        for f in self.lake.files(query.appid):
            day = dt.date.fromisoformat(f.day)
            for row in pq.read_table(self.lake.root / f.path).to_pylist():
                openid = row["openid"]
                if openid not in first_day or day < first_day[openid]:
                    first_day[openid] = day
                if query.begin <= day <= query.end:
                    _observe(latest.setdefault(openid, {}), row, ip)
        new, active = AudienceBuilder(), AudienceBuilder()
        for openid, seen in latest.items():
            values: dict[Dim, int] = {d: (seen[d][1] if d in seen else UNKNOWN) for d in ID_DIMS}
            device = seen["devices"][1] if "devices" in seen else None
            active.add(values, device)
            if first_day[openid] >= query.begin:
                new.add(values, device)
        return PortraitCounts(new=new.build(), active=active.build())

    def close(self) -> None:
        pass


def _observe(seen: Latest, row: dict[str, Any], ip: ipregion.ReferenceLookup) -> None:
    province, city = normalize.resolve_region(row["province_raw"], row["city_raw"])
    if province is None and city is None:  # only then the IP's (issue 17)
        province, city = ip.region(row.get("ip_prefix"))
    values: dict[str, Any] = {
        "province": province,
        "city": city,
        "genders": normalize.normalize_gender(row["gender_raw"]),
        "platforms": normalize.normalize_platform(row["platform_raw"]),
        "ages": normalize.age_id(row["age"]),
        "devices": normalize.normalize_device(row["device"]),
    }
    ts = row["ts"]
    for dim, value in values.items():
        if value is None:
            continue
        # Latest event wins; at the same ts the larger value (id or model name) wins.
        if dim not in seen or (ts, value) > seen[dim]:
            seen[dim] = (ts, value)
