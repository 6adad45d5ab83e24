"""Why a row of a bulk file is rejected, in SQL: ``reason_sql`` and the appid rules.

The rules and their reasons are ``portrait/rules.py``'s; this spells them in SQL, for
DuckDB (``ingest/pipeline.py``) and Spark (``spark/ingest.py``), in the order
``ingest/records.check_record`` applies them in Python (``tests/ingest/test_records.py``
holds the two side by side). A row is structurally broken before these run: the reasons
of ``_err`` come from ``ingest/sources.py`` and ``ingest/csv_rows.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import duckdb

from userportrait import sqlrows
from userportrait.portrait import rules
from userportrait.portrait.dims import MAX_AGE
from userportrait.portrait.rules import Reject
from userportrait.sqltext import Dialect, full_match, sql_str

#: Above this many distinct appids in a file, the appid rules run on every row.
MAX_APPID_VALUES: Final = 1000


@dataclass(frozen=True, slots=True)
class Appids:
    """The appid rules decided once per distinct appid of a batch (``appids_of``): a file
    holds few appids, and a regex per row costs ~1 s per 12 M rows.

    ``failing`` maps each rule of ``appid_rules`` to the raw appids that break it;
    ``trimmed``: every appid equals its ``trim`` (the rows need no trim).
    """

    failing: dict[str, tuple[str, ...]]
    trimmed: bool


def too_long_sql(expr: str, dialect: Dialect = "duckdb") -> str:
    """SQL: the text ``expr`` has more than ``MAX_FIELD_CHARS`` characters. In DuckDB the
    byte length (stored with the string) decides first: counting characters reads every
    byte, and a string of at most that many bytes has at most that many characters."""
    chars = f"length({expr}) > {rules.MAX_FIELD_CHARS}"
    if dialect == "spark":
        return chars
    return f"(strlen({expr}) > {rules.MAX_FIELD_CHARS} AND {chars})"


def blank_sql(expr: str, dialect: Dialect = "duckdb") -> str:
    """SQL: the non-NULL text ``expr`` is empty once trimmed. In DuckDB only a text that
    starts with a space (``trim`` strips ' ' and the other Unicode space separators, which
    are not ASCII) can be, so most rows are decided without building the trimmed copy."""
    if dialect == "spark":
        return f"trim({expr}) = ''"
    return (
        f"({expr} = '' OR ((starts_with({expr}, ' ') OR {expr} >= chr(128)) AND trim({expr}) = ''))"
    )


def appid_rules(expr: str, dialect: Dialect = "duckdb") -> dict[str, str]:
    """SQL: the appid rules of ``reason_sql`` on a non-NULL appid, by name, in their order."""
    return {
        "missing": f"trim({expr}) = ''",
        "too_long": f"length({expr}) > {rules.MAX_FIELD_CHARS}",
        "invalid": f"NOT {full_match(f'trim({expr})', rules.APPID_PATTERN, dialect)}",
        "reserved": f"lower(trim({expr})) = '{rules.RESERVED_APPID}'",
    }


def appids_of(con: duckdb.DuckDBPyConnection, src: str) -> Appids | None:
    """The rules of ``appid_rules`` applied to the distinct appids of ``src`` (None: too
    many; ``src`` may be a small table of them)."""
    checks = appid_rules("a")
    rows = con.execute(
        f"SELECT a, a = trim(a), {', '.join(checks.values())} FROM "
        f"(SELECT DISTINCT appid AS a FROM {src} WHERE appid IS NOT NULL "
        f"LIMIT {MAX_APPID_VALUES + 1})"
    ).fetchall()
    if len(rows) > MAX_APPID_VALUES:
        return None
    failing = {name: tuple(r[0] for r in rows if r[2 + i]) for i, name in enumerate(checks)}
    if sum(len(a) for values in failing.values() for a in values) > sqlrows.MAX_LITERAL_CHARS:
        return None
    return Appids(failing, all(r[1] for r in rows))


def reason_sql(
    dialect: Dialect = "duckdb",
    ts_text: str = "ts_text",
    age_int: str | None = None,
    appids: Appids | None = None,
    cuts: Mapping[str, str] | None = None,
) -> str:
    """SQL: why a standard-columns row is rejected, or NULL when it is accepted.

    The rules are written once; ``dialect`` changes only the spelling of the regex match
    and the instant literals (Spark's TIMESTAMP is an instant, like DuckDB's TIMESTAMPTZ).
    The rest specialise the SQL to a source without changing a verdict: ``ts_text`` is the
    SQL of the ts text (``Source.ts_text``), ``age_int`` the age as an integer when the
    file types it so (``Source.age_int``), and ``appids`` the appid rules decided per
    distinct appid (``appids_of``). ``cuts`` (appid -> first kept day, yyyy-mm-dd) refuses
    the events of days an app has expired (``store/expire.py``): they would be lost at
    the next expiry and would make a window before the cut look answerable.
    """
    instant = "TIMESTAMP" if dialect == "spark" else "TIMESTAMPTZ"
    appid_rule = appid_rules("appid", dialect)
    if appids is not None:
        # A rule no appid of the batch breaks drops out; the others test membership.
        appid_rule = {
            name: f"appid IN ({', '.join(sql_str(a) for a in failing)})" if failing else ""
            for name, failing in appids.failing.items()
        }
    lengths = [
        appid_rule["too_long"] if f == "appid" else too_long_sql(f, dialect)
        for f in rules.LENGTH_CHECKED
    ]
    too_long = " ".join(
        f"WHEN {check} THEN {Reject.TOO_LONG.sql(field=repr(f))}"
        for f, check in zip(rules.LENGTH_CHECKED, lengths, strict=True)
        if check
    )
    missing = (
        f"appid IS NULL OR {appid_rule['missing']}" if appid_rule["missing"] else "appid IS NULL"
    )
    invalid = (
        appid_rule["invalid"] and f"WHEN {appid_rule['invalid']} THEN {Reject.APPID_INVALID.sql()} "
    )
    reserved = (
        appid_rule["reserved"]
        and f"WHEN {appid_rule['reserved']} THEN {Reject.APPID_RESERVED.sql()} "
    )
    if age_int is None:
        age_num = "try_cast(trim(age) AS DOUBLE)"
        age_bad = (
            "age IS NOT NULL AND trim(age) <> '' AND ("
            f"{age_num} IS NULL OR {age_num} <> floor({age_num}) "
            f"OR {age_num} < 0 OR {age_num} > {MAX_AGE})"
        )
        age_text = "age"
    else:  # an integer needs no parse (and its text only in the message)
        age_bad = f"{age_int} < 0 OR {age_int} > {MAX_AGE}"
        age_text = f"CAST({age_int} AS VARCHAR)"
    # The lake's day is the Shanghai day of ts: both sessions are in Asia/Shanghai, so a
    # literal without an offset is the cut's Shanghai midnight (before 1992's DST too).
    before_cut = "".join(
        f"WHEN appid = {sql_str(appid)} AND ts < {instant} '{cut} 00:00:00' "
        f"THEN {Reject.BEFORE_CUT.sql(cut=sql_str(cut.replace('-', '')), value=ts_text)} "
        for appid, cut in sorted((cuts or {}).items())
    )
    return (
        "CASE WHEN _err IS NOT NULL THEN _err "
        f"WHEN {missing} THEN {Reject.APPID_MISSING.sql()} "
        f"{too_long} "
        f"{invalid}"
        f"{reserved}"
        f"WHEN openid IS NULL OR {blank_sql('openid', dialect)} THEN {Reject.OPENID_MISSING.sql()} "
        # ts is NULL whenever its text is blank; testing ts first spares turning every
        # typed Parquet timestamp into text.
        f"WHEN ts IS NULL AND ({ts_text} IS NULL OR trim({ts_text}) = '') "
        f"THEN {Reject.TS_MISSING.sql()} "
        f"WHEN ts IS NULL THEN {Reject.TS_INVALID.sql(value=ts_text)} "
        f"WHEN ts < {instant} '{rules.TS_FIRST}' OR ts >= {instant} '{rules.TS_END}' "
        f"THEN {Reject.TS_RANGE.sql(value=ts_text)} "
        f"{before_cut}"
        f"WHEN {age_bad} THEN {Reject.AGE_INVALID.sql(value=age_text)} "
        "END"
    )
