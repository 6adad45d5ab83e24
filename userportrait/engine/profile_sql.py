"""The profile fill rule (SPEC §3, issue 17) as SQL that DuckDB and Spark both read.

Shared by the ``sql`` and ``spark`` engines; the reference engine states the same rule in
Python and ``tests/test_engines_agree.py`` keeps them equal.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

from userportrait.portrait.dims import AGE_BUCKET_UPPER
from userportrait.store.lake import DIM_COLUMNS
from userportrait.store.profiles import latest_profiles_sql

#: Dimension -> the profile column that fills it when no event in the window carries it.
#: Platforms and devices come from events only.
PROFILE_FILL: Final = {
    "province": "p.province_id",
    "city": "p.city_id",
    "genders": "p.gender_id",
}


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
