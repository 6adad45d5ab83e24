"""Validate one event record received as JSON (the HTTP path), with the rules of bulk ingest.

Blank means empty after trimming Unicode spaces, as DuckDB's ``trim`` does (not tabs).
Bulk files are checked in SQL (``normalize_sql.reason_sql``); this is the same list of
checks in the same order for records that arrive one request at a time, so a record is
accepted or rejected for the same reason either way (``tests/test_records.py`` holds the two
side by side). An accepted record comes back canonical: ``ts`` as an RFC 3339 UTC string
with microseconds, ``age`` as an integer, every other field as received, so the
write-ahead log replays exactly what a file with these records would give.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from typing import Any, Final

from userportrait.ingest.normalize_sql import TS_RANGE_REASON
from userportrait.ingest.sources import FIELDS, TS_TEXT
from userportrait.portrait.normalize import APPID_RE, MAX_FIELD_CHARS, parse_age, parse_ts

_LENGTH_CHECKED: Final = (
    "appid", "openid", "event_id", "province", "city", "gender", "platform", "device",
)  # fmt: skip
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_TS_MIN_US: Final = -8 * 3600 * 1_000_000  # 1970-01-01 00:00 Asia/Shanghai
_TS_END_US: Final = int(
    (dt.datetime(9999, 12, 31, 16, tzinfo=dt.UTC) - _EPOCH) / dt.timedelta(microseconds=1)
)
#: What DuckDB's ``trim`` removes: the Unicode space separators (Zs), not tabs or newlines.
_SPACES: Final = "".join(chr(c) for c in range(0x3001) if unicodedata.category(chr(c)) == "Zs")
#: What the SQL path reads as epoch seconds or ms (``sources.ts_from_text``).
_INT_TEXT: Final = re.compile(r"[+-]?[0-9]{1,18}")
_TS_TEXT: Final = re.compile(TS_TEXT)
_JSON_TYPES: Final = {dict: "object", list: "array", bool: "boolean"}


class RecordError(ValueError):
    """Why one record was rejected."""


class _NotJSON:
    """Stands in for an NDJSON line that did not parse."""


NOT_JSON: Final = _NotJSON()


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(value)
    return str(value)


def check_record(record: Any, appid: str | None = None) -> dict[str, Any]:
    """The canonical record, or RecordError naming the field and the problem."""
    if record is NOT_JSON:
        raise RecordError("not valid JSON")
    if not isinstance(record, dict):
        raise RecordError("not a JSON object")
    for field in FIELDS:
        kind = _JSON_TYPES.get(type(record.get(field)))
        if kind:
            raise RecordError(f"{field} has the wrong type ({kind})")
    text = {f: _text(record.get(f)) for f in FIELDS}
    if text["appid"] is None or not text["appid"].strip(_SPACES):
        raise RecordError("appid is missing")
    for field in _LENGTH_CHECKED:
        value = text[field]
        if value is not None and len(value) > MAX_FIELD_CHARS:
            raise RecordError(f"{field} is longer than {MAX_FIELD_CHARS} characters")
    if not APPID_RE.match(text["appid"].strip(_SPACES)):
        raise RecordError("appid is not a valid appid (letters, digits, _ . - only)")
    if text["openid"] is None or not text["openid"].strip(_SPACES):
        raise RecordError("openid is missing")
    ts_raw = record.get("ts")
    if ts_raw is None or (isinstance(ts_raw, str) and not ts_raw.strip(_SPACES)):
        raise RecordError("ts is missing")
    try:
        ts_us = parse_ts_us(ts_raw)
    except ValueError:
        ts_us = None
    if ts_us is None or not -(2**63) < ts_us < 2**63 - 1:  # DuckDB cannot hold it either
        raise RecordError(f"ts is not a timestamp: {str(ts_raw)[:40]}")
    if not _TS_MIN_US <= ts_us < _TS_END_US:  # day numbers and dates stay representable
        raise RecordError(f"{TS_RANGE_REASON}{str(ts_raw)[:40]}")
    try:
        if text["age"] is not None and not text["age"].isascii():
            raise ValueError(text["age"])  # DuckDB reads ASCII digits only (not １２)
        age = parse_age(text["age"])
    except ValueError:
        raise RecordError(
            f"age is not a whole number of years in 0..150: {str(text['age'])[:40]}"
        ) from None
    if appid is not None and text["appid"].strip(_SPACES) != appid:
        raise RecordError("appid does not match the access_token's app")
    # Other fields keep their JSON value: the bulk reader turns a number into text itself
    # (from the parsed double: 6.103515625e-05 -> '0.00006103515625'), so it must see one.
    out: dict[str, Any] = {f: record[f] for f in FIELDS if record.get(f) is not None}
    out["ts"] = _rfc3339_us(ts_us)
    if age is not None:
        out["age"] = age
    return out


def parse_ts_us(raw: Any) -> int:
    """Epoch microseconds (RFC 3339 keeps sub-millisecond digits; numbers are s or ms).

    Epoch numbers must be integers (SPEC §2): bulk files reject ``1718000000.0`` as text
    that is neither an integer nor RFC 3339, so a JSON float is rejected here too.
    """
    if isinstance(raw, float):
        raise ValueError(raw)
    if isinstance(raw, str) and not _INT_TEXT.fullmatch(raw.strip(_SPACES)):
        text = raw.strip(_SPACES)
        if not _TS_TEXT.fullmatch(text):
            raise ValueError(raw)
        text = text.replace("Z", "+00:00")
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(raw) from None
        from userportrait.portrait.query import TZ

        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=TZ)
        delta = moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return parse_ts(raw) * 1000


def _rfc3339_us(ts_us: int) -> str:
    moment = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=ts_us)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
