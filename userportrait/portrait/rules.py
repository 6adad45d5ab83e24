"""The record grammar, defined once: the fields, the limits of docs/ingest.md and the reasons a
record is refused.

Bulk files are checked in SQL (``ingest/reject_sql.reason_sql`` and the structural
checks of ``ingest/sources.py`` and ``ingest/csv_rows.py``), records that arrive over HTTP
in Python (``ingest/records.check_record``; profiles ``portrait/profiles.check_profile``,
both through ``check_envelope``), and a Spark job in Spark SQL (``spark/``). Each spells
every reason from ``Reject`` below and every limit from the constants here, in the same
order, so a record gets the same verdict whichever way it comes
(``tests/ingest/test_records.py`` runs both on the same records).

======================  =============================================================
reason                  when
======================  =============================================================
NOT_UTF8, NOT_JSON,     the record cannot be read (structure); BLANK_LINE is skipped,
NOT_OBJECT, WRONG_TYPE  not counted; NOT_CLOSED, LINE_TOO_LONG, WRONG_WIDTH: a file's
TOO_DEEP, NOT_CLOSED,   line or CSV row; TOO_DEEP: an HTTP record nested too deep
LINE_TOO_LONG,
WRONG_WIDTH, BLANK_LINE
APPID_MISSING           no appid, or only spaces
TOO_LONG                a text field over ``MAX_FIELD_CHARS`` characters
APPID_INVALID           appid not ``APPID_PATTERN``
APPID_RESERVED          appid ``RESERVED_APPID`` in any case (Hive's missing value)
OPENID_MISSING          no openid, or only spaces
TS_MISSING              no ts
TS_INVALID              ts that is no timestamp (epoch numbers are integers)
TS_RANGE                ts outside ``TS_FIRST`` .. ``TS_END`` (years 1970..9999, Shanghai)
AGE_INVALID             age that is not a whole number in 0..``MAX_AGE``
UPDATED_AT_…, BIRTH_…   (profiles) ``updated_at`` and the birth date or year
APPID_NOT_TOKENS        (HTTP only) a record of another app than the ingest key's
======================  =============================================================

Limits also defined here: ``EPOCH_MS_FROM`` (epoch integers of that magnitude are ms, read
by ``normalize.parse_ts`` and the SQL of ``ingest/sources.py``), ``WECHAT_SPANS`` (the
request checks and the store), ``MAX_AGE`` (``dims``, with the age buckets).
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Literal

from userportrait.portrait.dims import MAX_AGE

#: The fields of an event record (docs/semantics.md): the required ones, then the optional ones.
REQUIRED: Final = ("appid", "openid", "ts")
#: The client fields (``portrait/devices.py`` turns them into a device and a platform).
CLIENT_FIELDS: Final = ("model", "brand", "system", "user_agent")
OPTIONAL: Final = (
    *("event_id", "province", "city", "gender", "platform", "device", "age"),
    *CLIENT_FIELDS,
    "ip",  # the region when the event has none (portrait/ipregion.py)
)
FIELDS: Final = REQUIRED + OPTIONAL
TEXT_FIELDS: Final = tuple(f for f in FIELDS if f != "ts")
#: The fields of a profile record, in the order their types are checked.
PROFILE_FIELDS: Final = (
    "appid", "openid", "updated_at", "gender", "birth_date", "birth_year", "province", "city",
)  # fmt: skip
PROFILE_REQUIRED: Final = ("appid", "openid")

#: The longest line of a file, in bytes (longer ones are ``LINE_TOO_LONG``). Read it as
#: ``rules.MAX_LINE_BYTES`` at call time: tests lower it.
MAX_LINE_BYTES: Final = 16 * 1024 * 1024
#: Longest text of any field, in characters (DuckDB's ``length``: code points).
MAX_FIELD_CHARS: Final = 256
#: Fields whose length is checked, in the order the checks run.
LENGTH_CHECKED: Final = (
    "appid", "openid", "event_id", "province", "city", "gender", "platform", "device",
    "model", "brand", "system",  # not user_agent: only its compact form is kept
)  # fmt: skip
#: An appid: Python's ``fullmatch`` and DuckDB's ``regexp_full_match`` read it alike.
APPID_PATTERN: Final = "[A-Za-z0-9_.-]{1,64}"
APPID_RE: Final = re.compile(APPID_PATTERN)
#: Hive's name for a NULL partition value: DuckDB writes ``appid=%5F_HIVE…`` for it, so such
#: an appid would not round-trip through the lake's directory names (any case).
RESERVED_APPID: Final = "__hive_default_partition__"
#: An epoch integer of this magnitude or more is milliseconds, else seconds.
EPOCH_MS_FROM: Final = 10**11
#: Accepted instants: Asia/Shanghai years 1970..9999 (day numbers stay representable).
TS_FIRST: Final = "1970-01-01 00:00:00+08"
TS_END: Final = "9999-12-31 16:00:00+00"
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
#: ``TS_FIRST`` and ``TS_END`` in epoch microseconds (Python's checks).
TS_FIRST_US: Final = -8 * 3600 * 1_000_000
TS_END_US: Final = (dt.datetime(9999, 12, 31, 16, tzinfo=dt.UTC) - _EPOCH) // dt.timedelta(
    microseconds=1
)
#: The text timestamps accepted (RFC 3339 and its naive / space-separated forms), written
#: out so that the HTTP path (``ingest/records.py``) accepts exactly the same strings:
#: DuckDB's cast alone also takes ``24:00:00``, ``+24:00`` or zone names.
TS_TEXT: Final = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}([T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,9})?)?"
    r"(Z|[+-]([01][0-9]|2[0-3])(:?[0-5][0-9])?)?)?"
)
#: A ts text read as epoch seconds or milliseconds (by magnitude, ``EPOCH_MS_FROM``).
INT_TEXT: Final = "[+-]?[0-9]{1,18}"
#: The window spans WeChat answers (1, 7 and 30 days; errcode 61501 for others).
WECHAT_SPANS: Final = (1, 7, 30)
#: How much of a bad value a reason quotes.
QUOTE_CHARS: Final = 40
#: How deep a record may nest: the record and one level in its values, so that a value that
#: is an object or array is still rejected by its field's type (docs/ingest.md: values are
#: scalars). Anything deeper is refused from its bytes (``ingest/records.py``).
MAX_DEPTH: Final = 2
#: A value of these JSON types is ``WRONG_TYPE`` (records hold scalars); the SQL readers
#: test their upper-case names (``BAD_JSON_TYPES``).
JSON_TYPES: Final = {dict: "object", list: "array", bool: "boolean"}
BAD_JSON_TYPES: Final = tuple(kind.upper() for kind in JSON_TYPES.values())
#: What DuckDB's ``trim`` removes: the Unicode space separators (Zs), not tabs or newlines.
SPACES: Final = "".join(chr(c) for c in range(0x3001) if unicodedata.category(chr(c)) == "Zs")


class Reject(StrEnum):
    """Why a record is refused; ``{…}`` parts are filled by ``text`` / ``sql``."""

    #: An empty line of a file: skipped (never counted); rejects keep their line numbers.
    BLANK_LINE = "blank line"
    NOT_UTF8 = "not valid UTF-8"
    LINE_TOO_LONG = "line is longer than {max_bytes} bytes"
    NOT_CLOSED = "a quoted field is not closed"
    WRONG_WIDTH = "row has {fields} fields; the header has {width}"
    NOT_JSON = "not valid JSON"
    TOO_DEEP = "nested deeper than {max_depth} levels (a record is an object of scalars)"
    NOT_OBJECT = "not a JSON object"
    WRONG_TYPE = "{field} has the wrong type ({kind})"
    APPID_MISSING = "appid is missing"
    TOO_LONG = "{field} is longer than {limit} characters"
    APPID_INVALID = "appid is not a valid appid (letters, digits, _ . - only)"
    APPID_RESERVED = (
        "appid __HIVE_DEFAULT_PARTITION__ is reserved (the Hive name of a missing value)"
    )
    OPENID_MISSING = "openid is missing"
    TS_MISSING = "ts is missing"
    TS_INVALID = "ts is not a timestamp: {value}"
    TS_RANGE = "ts is outside the years 1970..9999 (Asia/Shanghai): {value}"
    #: An event of a day its app has expired (``store/expire.py``; ``cut``: YYYYMMDD).
    BEFORE_CUT = "ts is before the retention cut {cut} of its app: {value}"
    AGE_INVALID = "age is not a whole number of years in 0..{max_age}: {value}"
    UPDATED_AT_INVALID = "updated_at is not a timestamp: {value}"
    UPDATED_AT_RANGE = "updated_at is outside the years 1970..9999 (Asia/Shanghai): {value}"
    UPDATED_AT_FUTURE = "updated_at is more than a day after the time of ingest: {value}"
    BIRTH_DATE_INVALID = "birth_date is not a date (YYYY-MM-DD or YYYYMMDD): {value}"
    BIRTH_YEAR_INVALID = "birth_year is not a year (YYYY): {value}"
    BIRTH_FUTURE = "birth date is after the day of ingest: {value}"
    BIRTH_TOO_OLD = "birth date is more than 120 years before the day of ingest: {value}"
    APPID_NOT_TOKENS = "appid does not match the ingest key's app"

    def text(self, **parts: object) -> str:
        """The reason in Python; a ``value`` is quoted up to ``QUOTE_CHARS`` characters."""
        if "value" in parts:
            parts["value"] = str(parts["value"])[:QUOTE_CHARS]
        return self.value.format(**_constants(), **parts)

    def sql(self, **exprs: str) -> str:
        """The reason as a SQL expression: its text, with each ``{name}`` replaced by the SQL
        expression ``exprs[name]`` (``value``: its first ``QUOTE_CHARS`` characters; a
        literal such as ``'city'`` joins the text around it)."""
        constants = {name: str(value) for name, value in _constants().items()}
        parts: list[tuple[bool, str]] = []  # (literal text?, text or SQL)
        for i, piece in enumerate(re.split(r"\{(\w+)\}", self.value)):
            if i % 2 == 0:
                parts.append((True, piece))
            elif piece in constants:
                parts.append((True, constants[piece]))
            elif piece == "value":
                parts.append((False, f"left({exprs[piece]}, {QUOTE_CHARS})"))
            elif re.fullmatch(r"'[^']*'", exprs[piece]):
                parts.append((True, exprs[piece][1:-1]))
            else:
                parts.append((False, exprs[piece]))
        merged: list[tuple[bool, str]] = []
        for literal, text in parts:
            if literal and merged and merged[-1][0]:
                merged[-1] = (True, merged[-1][1] + text)
            elif not literal or text:
                merged.append((literal, text))
        sql = [("'" + text.replace("'", "''") + "'") if lit else text for lit, text in merged]
        return " || ".join(sql)


def appid_problem(appid: str) -> Reject | None:
    """Why ``appid`` (trimmed) cannot name an app, or None."""
    if not APPID_RE.fullmatch(appid):
        return Reject.APPID_INVALID
    if appid.lower() == RESERVED_APPID:
        return Reject.APPID_RESERVED
    return None


def _constants() -> dict[str, int]:
    """The limits a reason may name (read at call time: tests lower ``MAX_LINE_BYTES``)."""
    return {
        "limit": MAX_FIELD_CHARS,
        "max_age": MAX_AGE,
        "max_bytes": MAX_LINE_BYTES,
        "max_depth": MAX_DEPTH,
    }


def ts_in_range(us: int) -> bool:
    """Whether the instant ``us`` (epoch microseconds) is in ``TS_FIRST`` .. ``TS_END``."""
    return TS_FIRST_US <= us < TS_END_US


class RecordError(ValueError):
    """Why one record (an event or a profile) was rejected: the text of a ``Reject``."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """What ``check_envelope`` read: each field's text (None: absent), the trimmed appid
    and openid."""

    text: dict[str, str | None]
    appid: str
    openid: str


#: How a record's values are trimmed (see ``check_envelope``).
Trim = Literal["duckdb", "python"]


def check_envelope(
    record: Any, fields: tuple[str, ...], length_checked: tuple[str, ...], trim: Trim
) -> Envelope:
    """The checks every record starts with, in their order: an object, each of ``fields``
    a scalar (the first of the wrong type in ``fields`` order is the reason), an appid,
    no field of ``length_checked`` over ``MAX_FIELD_CHARS``, a valid appid, an openid.
    RecordError names the first that fails.

    ``trim`` says what blank means. ``"duckdb"`` (events): empty after removing
    ``SPACES``, as DuckDB's ``trim`` reads it, since bulk files are checked in SQL; a blank
    value stays a value (its length counts). ``"python"`` (profiles, checked in Python
    only): empty after ``str.strip`` (tabs and newlines too), and a blank value is absent.
    """
    if not isinstance(record, dict):
        raise RecordError(Reject.NOT_OBJECT.text())
    spaces = SPACES if trim == "duckdb" else None
    text: dict[str, str | None] = {}
    for field in fields:
        value = record.get(field)
        kind = JSON_TYPES.get(type(value))
        if kind:
            raise RecordError(Reject.WRONG_TYPE.text(field=field, kind=kind))
        raw = None if value is None else str(value)
        if trim == "python" and raw is not None and not raw.strip():
            raw = None
        text[field] = raw
    appid = (text["appid"] or "").strip(spaces)
    if not appid:
        raise RecordError(Reject.APPID_MISSING.text())
    for field in length_checked:
        value = text[field]
        if value is not None and len(value) > MAX_FIELD_CHARS:
            raise RecordError(Reject.TOO_LONG.text(field=field))
    problem = appid_problem(appid)
    if problem:
        raise RecordError(problem.text())
    openid = (text["openid"] or "").strip(spaces)
    if not openid:
        raise RecordError(Reject.OPENID_MISSING.text())
    return Envelope(text, appid, openid)
