"""The portrait query in SQL, written once for every SQL engine (``sql``: DuckDB, ``spark``).

Same attribution as every engine (docs/semantics.md): per user the latest
event carrying each attribute in the window, ties to the larger value (struct order), first
day over all data; gaps filled from the latest profile record, its age on the window's
last day. ``dialect`` changes only the spelling of a struct, as ``reason_sql`` in ingest
does for its rules; the engines differ only in how they name the events and profiles
(a DuckDB ``read_parquet(...)`` or a Spark temporary view). The reference engine states
the same rules in Python; ``tests/test_engines_agree.py`` and
``tests/test_profile_semantics.py`` keep them equal.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from userportrait.portrait.counts import AudienceCounts, CrossCounts, PortraitCounts
from userportrait.portrait.dims import AGE_BUCKET_UPPER, Dim
from userportrait.portrait.query import Filter, PortraitQuery
from userportrait.sqltext import Dialect, sql_str
from userportrait.store.lake import DIM_COLUMNS
from userportrait.store.profiles import latest_profiles_sql

#: Dimension -> the profile column that fills it when no event in the window carries it.
#: Platforms and devices come from events only.
PROFILE_FILL: Final = {
    "province": "p.province_id",
    "city": "p.city_id",
    "genders": "p.gender_id",
}

#: ``portrait_sql`` or ``crosstab_sql``: (events, query, profiles, dialect, first_seen) -> SQL.
MakeSQL = Callable[[str, PortraitQuery, "str | None", Dialect, "str | None"], str]


def portrait_sql(
    events: str,
    query: PortraitQuery,
    profiles: str | None,
    dialect: Dialect,
    first_seen: str | None = None,
) -> str:
    """Exact portrait counts per (dimension, value, is_new) over the relation ``events``
    (the appid's lake files up to the window's end), gaps filled from the latest records of
    the relation ``profiles`` (None: the app has none); ``first_seen`` (openid, first_day)
    the first days an expiry kept (``store/expire.py``; None: never expired). Rows: one column per dimension,
    ``is_new``, ``g_<dim>`` (GROUPING) per dimension, ``n``; ``counts_from_rows`` reads them."""
    sets = ", ".join(f"(is_new, {dim})" for dim in DIM_COLUMNS)
    return f"""
    {users_sql(events, query, profiles, dialect, first_seen)}
    SELECT {", ".join(DIM_COLUMNS)}, is_new,
           {", ".join(f"grouping({d}) AS g_{d}" for d in DIM_COLUMNS)}, count(*) AS n
    FROM flagged WHERE {segment_sql(query.filters)}
    GROUP BY GROUPING SETS ({sets})
    """


def crosstab_sql(
    events: str,
    query: PortraitQuery,
    profiles: str | None,
    dialect: Dialect,
    first_seen: str | None = None,
) -> str:
    """Users per pair of ``query.by`` values and ``is_new``: rows (a, b, is_new, n)."""
    assert query.by is not None
    a, b = query.by
    return f"""
    {users_sql(events, query, profiles, dialect, first_seen)}
    SELECT {a}, {b}, is_new, count(*) AS n
    FROM flagged WHERE {segment_sql(query.filters)}
    GROUP BY {a}, {b}, is_new
    """


def users_sql(
    events: str,
    query: PortraitQuery,
    profiles: str | None,
    dialect: Dialect,
    first_seen: str | None = None,
) -> str:
    """The ``WITH`` clause ending in ``flagged``: one row per user active in the window,
    a column per dimension (NULL: 未知) and ``is_new``."""
    b, e = query.begin.isoformat(), query.end.isoformat()
    users = f"({filled_users_sql('users', profiles, query.end)})" if profiles else "users"
    # Latest event carrying the attribute; at equal ts the larger value wins (struct order).
    latest = ", ".join(
        f"(max({_struct(dialect, t='ts', v=col)}) FILTER (WHERE {col} IS NOT NULL)).v AS {dim}"
        for dim, col in DIM_COLUMNS.items()
    )
    days = "SELECT openid, day AS first_day FROM ev"
    if first_seen:
        days += f" UNION ALL SELECT openid, first_day FROM {first_seen}"
    return f"""
    WITH ev AS (SELECT * FROM {events}),
    first_seen AS (SELECT openid, min(first_day) AS first_day FROM ({days}) GROUP BY openid),
    users AS (
        SELECT openid, {latest} FROM ev
        WHERE day BETWEEN DATE '{b}' AND DATE '{e}' GROUP BY openid
    ),
    flagged AS (
        SELECT u.*, f.first_day >= DATE '{b}' AS is_new FROM {users} u JOIN first_seen f USING (openid)
    )"""


def segment_sql(filters: Iterable[Filter]) -> str:
    """The condition of a segment on ``flagged`` (docs/semantics.md: NULL is 未知, id 0)."""
    conds = []
    for dim, value in filters:
        if dim == "devices":
            conds.append("devices IS NULL" if value is None else f"devices = {sql_str(str(value))}")
        else:
            conds.append(f"coalesce({dim}, 0) = {int(value or 0)}")
    return " AND ".join(conds) or "TRUE"


def _struct(dialect: Dialect, **fields: str) -> str:
    if dialect == "spark":
        return "named_struct(" + ", ".join(f"'{k}', {v}" for k, v in fields.items()) + ")"
    return "{" + ", ".join(f"'{k}': {v}" for k, v in fields.items()) + "}"


def profile_age_id_sql(birth: str, end: dt.date) -> str:
    """SQL: the ``ages`` id of a birth date on ``end`` (NULL: none, or born after ``end``);
    mirrors ``portrait.profiles.profile_age_id``."""
    age = (
        f"({end.year} - year({birth}) - CASE WHEN month({birth}) > {end.month} OR "
        f"(month({birth}) = {end.month} AND day({birth}) > {end.day}) THEN 1 ELSE 0 END)"
    )
    whens = " ".join(f"WHEN {age} <= {upper} THEN {bucket}" for upper, bucket in AGE_BUCKET_UPPER)
    return (
        f"CASE WHEN {birth} IS NULL OR {birth} > DATE '{end.isoformat()}' THEN NULL "
        f"{whens} ELSE 6 END"
    )


def filled_users_sql(users: str, profiles: str, end: dt.date) -> str:
    """SQL: the relation ``users`` (openid and one column per dimension, NULL when no event
    in the window carries it) with the gaps filled from the latest profile in ``profiles``
    (a relation of profile files' rows)."""
    cols = []
    for dim in DIM_COLUMNS:
        if dim in PROFILE_FILL:
            cols.append(f"coalesce(u.{dim}, {PROFILE_FILL[dim]}) AS {dim}")
        elif dim == "ages":
            cols.append(f"coalesce(u.ages, {profile_age_id_sql('p.birth_date', end)}) AS ages")
        else:
            cols.append(f"u.{dim}")
    return (
        f"SELECT u.openid, {', '.join(cols)} FROM {users} u "
        f"LEFT JOIN ({latest_profiles_sql(profiles)}) p ON p.openid = u.openid"
    )


def cross_from_rows(rows: Iterable[Sequence[Any]], by: tuple[Dim, Dim]) -> CrossCounts:
    """The rows of ``crosstab_sql`` (a, b, is_new, n) as counts."""
    out = CrossCounts()
    for a, b, is_new, n in rows:
        key = (_cell_key(by[0], a), _cell_key(by[1], b))
        for target in (out.active, out.new) if is_new else (out.active,):
            target[key] = target.get(key, 0) + n
    return out


def _cell_key(dim: Dim, value: object) -> int | str | None:
    if dim == "devices":
        return value if isinstance(value, str) else None
    return 0 if value is None else int(value)  # type: ignore[call-overload]


def counts_from_rows(rows: Iterable[Sequence[Any]]) -> PortraitCounts:
    """The rows of ``portrait_sql`` (dims, is_new, GROUPING per dim, n) as counts."""
    counts = PortraitCounts.empty()
    dims = list(DIM_COLUMNS)
    for row in rows:
        is_new, n = row[len(dims)], row[-1]
        groupings = list(row[len(dims) + 1 : -1])
        dim = dims[groupings.index(0)]
        value = row[dims.index(dim)]
        for audience in (counts.active, counts.new) if is_new else (counts.active,):
            _add(audience, dim, value, n)
    return counts


def _add(audience: AudienceCounts, dim: str, value: object, n: int) -> None:
    if dim == "devices":
        key = value if isinstance(value, str) else None
        audience.devices[key] = audience.devices.get(key, 0) + n
    else:
        d: Dim = dim  # type: ignore[assignment]
        vid = 0 if value is None else int(value)  # type: ignore[call-overload]
        audience.ids[d][vid] = audience.ids[d].get(vid, 0) + n


class LakeSQL:
    """What the SQL engines share: the two queries, their rows decoded; an engine says only
    how it runs ``make``'s query over an app's lake (``_rows``: None when it has no files)."""

    def _rows(self, query: PortraitQuery, make: MakeSQL) -> list[Any] | None:
        raise NotImplementedError

    def run_portrait(self, query: PortraitQuery) -> PortraitCounts:
        rows = self._rows(query, portrait_sql)
        return counts_from_rows(rows) if rows is not None else PortraitCounts.empty()

    def run_crosstab(self, query: PortraitQuery) -> CrossCounts:
        assert query.by is not None
        rows = self._rows(query, crosstab_sql)
        return cross_from_rows(rows, query.by) if rows is not None else CrossCounts()
