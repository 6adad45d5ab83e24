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
import json
import re
import unicodedata
from typing import Any, Final

import orjson

from userportrait.ingest.normalize_sql import TS_RANGE_REASON
from userportrait.ingest.sources import FIELDS, TS_TEXT
from userportrait.portrait.normalize import MAX_FIELD_CHARS, appid_problem, parse_age, parse_ts
from userportrait.portrait.query import TZ

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
#: Bytes -> b"0" for ASCII digits, b" " for anything else (finds runs of digits fast).
_DIGITS_ONLY: Final = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))


class RecordError(ValueError):
    """Why one record was rejected."""


class _NotJSON:
    """Stands in for an NDJSON line that did not parse."""


NOT_JSON: Final = _NotJSON()


def parse_records(body: bytes) -> list[Any]:
    """A JSON array, or NDJSON (one value per line; a bad line becomes ``NOT_JSON``).

    orjson when it can (about 3x faster than json), json where they could differ: orjson
    refuses NaN and 1e400 (json reads them) and turns integers beyond 64 bits into floats,
    so a body with a 20-digit run is read by json alone. The records are the same either
    way. A record holding a lone surrogate (a ``\\ud800`` escape) is ``NOT_JSON``, as DuckDB
    reads it in a file.
    """
    text = body.decode("utf-8", errors="replace")
    long_digits = body.translate(_DIGITS_ONLY).find(b"0" * 20) >= 0  # 7x a regex's speed
    loads = _loads_json if long_digits else _loads
    if text.lstrip().startswith("["):
        records = loads(text)
        if records is NOT_JSON:
            raise ValueError("body is not a valid JSON array")
        records = records if isinstance(records, list) else [records]
    else:
        records = [loads(line) for line in text.splitlines() if line.strip()]
    if "\\u" in text:  # surrogates only arrive as escapes (bad bytes became U+FFFD)
        records = [NOT_JSON if _has_surrogate(r) else r for r in records]
    return records


def _loads(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return _loads_json(text)


def _loads_json(text: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return NOT_JSON


def _has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= c <= "\udfff" for c in value)
    if isinstance(value, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogate(v) for v in value)
    return False


def dump_record(canonical: dict[str, Any]) -> bytes:
    """One write-ahead-log line (orjson; json for integers beyond 64 bits)."""
    try:
        return orjson.dumps(canonical) + b"\n"
    except TypeError:
        pass
    try:
        return json.dumps(canonical, ensure_ascii=False).encode() + b"\n"
    except UnicodeEncodeError:  # a lone surrogate that parse_records did not see
        raise RecordError("not valid JSON") from None


def check_record(record: Any, appid: str | None = None) -> dict[str, Any]:
    """The canonical record, or RecordError naming the field and the problem."""
    if record is NOT_JSON:
        raise RecordError("not valid JSON")
    if not isinstance(record, dict):
        raise RecordError("not a JSON object")
    # One pass: the first field of the wrong type (in FIELDS order) is the reason; the
    # text of each field for the checks; the fields present, as received, for the output.
    text: dict[str, str | None] = {}
    out: dict[str, Any] = {}
    for field in FIELDS:
        value = record.get(field)
        if value is None:
            text[field] = None
            continue
        kind = _JSON_TYPES.get(type(value))
        if kind:
            raise RecordError(f"{field} has the wrong type ({kind})")
        text[field] = str(value)
        out[field] = value
    if text["appid"] is None or not text["appid"].strip(_SPACES):
        raise RecordError("appid is missing")
    for field in _LENGTH_CHECKED:
        value = text[field]
        if value is not None and len(value) > MAX_FIELD_CHARS:
            raise RecordError(f"{field} is longer than {MAX_FIELD_CHARS} characters")
    problem = appid_problem(text["appid"].strip(_SPACES))
    if problem:
        raise RecordError(problem)
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
    if isinstance(raw, str) and not _INT_TEXT.fullmatch(text := raw.strip(_SPACES)):
        if not _TS_TEXT.fullmatch(text):
            raise ValueError(raw)
        try:
            moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(raw) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=TZ)
        delta = moment - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return parse_ts(raw) * 1000


def _rfc3339_us(ts_us: int) -> str:
    m = _EPOCH + dt.timedelta(microseconds=ts_us)  # years 1970..9999: four digits
    return (
        f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}"
        f".{m.microsecond:06d}Z"
    )
