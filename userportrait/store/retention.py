"""An app's retention cut as its readers see it: windows before it refused, the first
days of users first seen before it (the expiry that sets it: ``store/expire.py``)."""

from __future__ import annotations

import datetime as dt

from userportrait.errors import InvalidDateRange
from userportrait.sqltext import sql_str
from userportrait.store.catalog import Catalog
from userportrait.store.lake import Lake


def first_seen_relation(lake: Lake, rel: str) -> str:
    """SQL: the rows (openid, first_day DATE) of a first-seen file."""
    return f"read_parquet({sql_str(str(lake.root / rel))}, hive_partitioning=false)"


def first_seen_sql(lake: Lake, appid: str) -> str | None:
    """SQL: the app's kept first days (openid, first_day), None when it has none."""
    kept = lake.catalog.retention_of(appid)
    if kept is None or kept.first_seen is None:
        return None
    return first_seen_relation(lake, kept.first_seen)


def check_window(catalog: Catalog, appid: str, begin: dt.date) -> None:
    """Refuse a window that starts before the app's retention cut (61501): its events are
    gone, so its portrait cannot be exact."""
    kept = catalog.retention_of(appid)
    if kept is not None and begin.isoformat() < kept.first_kept:
        first = kept.first_kept.replace("-", "")
        raise InvalidDateRange(
            f"begin_date {begin.strftime('%Y%m%d')} is before the first kept day {first} "
            "(older events were expired)"
        )
