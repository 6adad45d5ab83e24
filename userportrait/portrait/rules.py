"""The input rules, defined once: the limits of SPEC §2 and the reasons a record is refused.

Bulk files are checked in SQL (``ingest/normalize_sql.reason_sql`` and the structural
checks of ``ingest/sources.py``), records that arrive over HTTP in Python
(``ingest/records.check_record``), and a Spark job in Spark SQL (``spark/``). Each spells
every reason from ``Reject`` below and every limit from the constants here, in the same
order, so a record gets the same verdict whichever way it comes
(``tests/ingest/test_records.py`` runs both on the same records).

======================  =============================================================
reason                  when
======================  =============================================================
NOT_UTF8, NOT_JSON,     the record cannot be read (structure)
NOT_OBJECT, WRONG_TYPE
APPID_MISSING           no appid, or only spaces
TOO_LONG                a text field over ``MAX_FIELD_CHARS`` characters
APPID_INVALID           appid not ``APPID_PATTERN``
APPID_RESERVED          appid ``RESERVED_APPID`` in any case (Hive's missing value)
OPENID_MISSING          no openid, or only spaces
TS_MISSING              no ts
TS_INVALID              ts that is no timestamp (epoch numbers are integers)
TS_RANGE                ts outside ``TS_FIRST`` .. ``TS_END`` (years 1970..9999, Shanghai)
AGE_INVALID             age that is not a whole number in 0..``MAX_AGE``
APPID_NOT_TOKENS        (HTTP only) a record of another app than the ingest key's
======================  =============================================================

Limits also defined here: ``EPOCH_MS_FROM`` (epoch integers of that magnitude are ms, read
by ``normalize.parse_ts`` and the SQL of ``ingest/sources.py``), ``WECHAT_SPANS`` (the
request checks and the store), ``MAX_AGE`` (``dims``, with the age buckets).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Final

from userportrait.portrait.dims import MAX_AGE

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
#: The window spans WeChat answers (1, 7 and 30 days; errcode 61501 for others).
WECHAT_SPANS: Final = (1, 7, 30)
#: How much of a bad value a reason quotes.
QUOTE_CHARS: Final = 40


class Reject(StrEnum):
    """Why a record is refused; ``{…}`` parts are filled by ``text`` / ``sql``."""

    NOT_UTF8 = "not valid UTF-8"
    NOT_JSON = "not valid JSON"
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
    AGE_INVALID = "age is not a whole number of years in 0..{max_age}: {value}"
    APPID_NOT_TOKENS = "appid does not match the ingest key's app"

    def text(self, **parts: object) -> str:
        """The reason in Python; a ``value`` is quoted up to ``QUOTE_CHARS`` characters."""
        if "value" in parts:
            parts["value"] = str(parts["value"])[:QUOTE_CHARS]
        return self.value.format(limit=MAX_FIELD_CHARS, max_age=MAX_AGE, **parts)

    def sql(self, **exprs: str) -> str:
        """The reason as a SQL expression: its text, with each ``{name}`` replaced by the SQL
        expression ``exprs[name]`` (``value``: its first ``QUOTE_CHARS`` characters; a
        literal such as ``'city'`` joins the text around it)."""
        constants = {"limit": str(MAX_FIELD_CHARS), "max_age": str(MAX_AGE)}
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
