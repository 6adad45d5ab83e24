"""Validate one event record received as JSON (the HTTP path), with the rules of bulk ingest.

Blank means empty after trimming Unicode spaces, as DuckDB's ``trim`` does (not tabs).
Bulk files are checked in SQL (``reject_sql.reason_sql``); this is the same list of
checks in the same order for records that arrive one request at a time, so a record is
accepted or rejected for the same reason either way (``tests/ingest/test_records.py`` holds the two
side by side). An accepted record comes back canonical: ``ts`` as an RFC 3339 UTC string
with microseconds, ``age`` as an integer, every other field as received, so the
write-ahead log replays exactly what a file with these records would give.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson

from userportrait.errors import PayloadTooLarge
from userportrait.portrait.normalize import parse_age, parse_ts
from userportrait.portrait.query import TZ
from userportrait.portrait.rules import (
    FIELDS,
    INT_TEXT,
    LENGTH_CHECKED,
    MAX_DEPTH,
    SPACES,
    TS_TEXT,
    RecordError,
    Reject,
    check_envelope,
    ts_in_range,
)

_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
#: What the SQL path reads as epoch seconds or ms (``sources.ts_from_text``).
_INT_TEXT: Final = re.compile(INT_TEXT)
_TS_TEXT: Final = re.compile(TS_TEXT)
#: Bytes -> b"0" for ASCII digits, b" " for anything else (finds runs of digits fast).
_DIGITS_ONLY: Final = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))


class Unreadable:
    """Stands in for a record that could not be read; ``reason`` says why."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"<{self.reason}>"


NOT_JSON: Final = Unreadable(Reject.NOT_JSON.text())
NOT_UTF8: Final = Unreadable(Reject.NOT_UTF8.text())
#: A record nested deeper than ``MAX_DEPTH`` is refused from its bytes, before orjson
#: builds it: deep or many-bracketed bodies cost up to 45x their size in Python objects and
#: seconds of CPU.
TOO_DEEP: Final = Unreadable(Reject.TOO_DEEP.text())
#: JSON's whitespace (RFC 8259): a line of only these is blank and skipped.
_JSON_SPACE: Final = b" \t\r"
#: Bytes of a body split at a time when counting an array's elements.
_SLICE_BYTES: Final = 1 << 16
#: An object or array holding no other one: removed level by level when counting.
_INNERMOST: Final = re.compile(rb"\{[^\[\]{}]*\}|\[[^\[\]{}]*\]")
#: Bytes other than the brackets and commas, deleted before counting.
_NOT_STRUCTURE: Final = bytes(b for b in range(256) if b not in b"[]{},")
#: JSON arrays larger than this are counted before they are parsed. Counting costs
#: 1.5-2x orjson's parse; a full batch of real events (10,000 x ~190 bytes) stays under
#: it, and parsing a smaller array at once costs at most ~36x its size ({} elements).
_COUNT_FIRST_BYTES: Final = 2 << 20
#: Python reads no integer longer than this (``sys.int_info.default_max_str_digits``).
_MAX_INT_DIGITS: Final = 4300


def parse_records(body: bytes, max_records: int | None = None) -> list[Any]:
    """A JSON array, or NDJSON (one value per line; a bad line becomes ``NOT_JSON``).

    Lines end at ``\\n`` (``\\r\\n`` too) and nowhere else: U+2028 or U+0085 inside a
    string is text, as in a file. orjson when it can (about 3x faster than json), json
    where they could differ: orjson refuses NaN and 1e400 (json reads them) and turns
    integers beyond 64 bits into floats, so a body with a 20-digit run is read by json
    alone; an integer too long for Python (5000 digits) is kept as its digits, the text a
    file gives. A record holding a lone surrogate (a ``\\ud800`` escape) is ``NOT_JSON``, as
    DuckDB reads it in a file; one that is not UTF-8 is ``NOT_UTF8``. Beyond ``max_records``
    PayloadTooLarge: NDJSON lines are counted before each is parsed, a JSON array over
    ``_COUNT_FIRST_BYTES`` before it is parsed, a smaller one after. Nesting is measured
    in bytes before anything is built: a record deeper than ``MAX_DEPTH`` is ``TOO_DEEP``,
    a JSON array of such records ValueError.
    """
    long_digits = body.translate(_DIGITS_ONLY).find(b"0" * 20) >= 0  # 7x a regex's speed
    loads = _loads_json if long_digits else _loads
    escapes = b"\\u" in body  # surrogates only arrive as escapes
    if body.lstrip(_JSON_SPACE + b"\n")[:1] == b"[":
        try:
            return _parse_array(body, loads, escapes, max_records)
        except ValueError:
            if not _first_line_parses(body, loads):
                raise
            # NDJSON whose first record is an array: its lines are read one by one.
    records: list[Any] = []
    start, end = 0, len(body)
    while start < end:
        stop = body.find(b"\n", start)
        stop = end if stop < 0 else stop
        line = body[start:stop]
        start = stop + 1
        if not line.strip(_JSON_SPACE):
            continue
        if max_records is not None and len(records) >= max_records:
            raise _too_many(max_records)
        records.append(
            TOO_DEEP if _deeper_than(line, MAX_DEPTH) else _checked(loads(line), escapes)
        )
    return records


def _parse_array(
    body: bytes, loads: Callable[[bytes], Any], escapes: bool, max_records: int | None
) -> list[Any]:
    shape = _structure(body)
    if _nests_deeper(shape, MAX_DEPTH + 1):  # the array, then its records
        raise ValueError(
            f"body is nested deeper than {MAX_DEPTH + 1} levels "
            "(a JSON array of records, each an object of scalars)"
        )
    # Only large bodies are counted first (a body cannot hold more elements than commas
    # + 1); a small one is parsed, then counted.
    if (
        max_records is not None
        and len(body) > _COUNT_FIRST_BYTES
        and body.count(b",") >= max_records
    ):
        if _elements(shape) > max_records:
            raise _too_many(max_records)
    records = loads(body)
    if isinstance(records, Unreadable):
        raise ValueError("body is not a valid JSON array")
    records = records if isinstance(records, list) else [records]
    if max_records is not None and len(records) > max_records:
        raise _too_many(max_records)
    return [_checked(r, escapes) for r in records] if escapes else records


def _first_line_parses(body: bytes, loads: Callable[[bytes], Any]) -> bool:
    start = len(body) - len(body.lstrip(_JSON_SPACE + b"\n"))
    stop = body.find(b"\n", start)
    if stop < 0 or _deeper_than(body[start:stop], MAX_DEPTH):
        return False
    return not isinstance(loads(body[start:stop]), Unreadable)


def _deeper_than(data: bytes, depth: int) -> bool:
    """Whether ``data`` nests objects or arrays more than ``depth`` levels (strings skipped)."""
    if data.count(b"[") + data.count(b"{") <= depth:  # a record's line, mostly: no scan
        return False
    return _nests_deeper(_structure(data), depth)


def _nests_deeper(shape: bytes, depth: int) -> bool:
    """Whether a pair of brackets in ``shape`` (``_structure``) holds more than ``depth`` levels.

    Removing the innermost pairs ``depth`` times leaves a pair only where one held deeper
    ones; brackets that never pair (invalid JSON) are left to the parser, which refuses
    them before building anything deeper than the pairs that closed.
    """
    shape = shape.translate(None, b",")
    for _ in range(depth):
        flatter = _flatten(shape)
        if flatter == shape:
            return False
        shape = flatter
    return _INNERMOST.search(shape) is not None


def _array_length(body: bytes) -> int:
    """The elements of a JSON array, counted without building them (0 if unsure)."""
    return _elements(_structure(body))


def _elements(shape: bytes) -> int:
    """The elements of the JSON array whose ``_structure`` is ``shape`` (0 if unsure)."""
    if shape[:1] != b"[" or shape[-1:] != b"]":
        return 0
    inner = shape[1:-1]
    if not inner:  # [] or one scalar: nothing to count
        return 0
    for _ in range(64):  # deeper records are not events; orjson refuses > 1024 anyway
        if b"[" not in inner and b"{" not in inner:
            return inner.count(b",") + 1
        flatter = _flatten(inner)
        if flatter == inner:
            return 0
        inner = flatter
    return 0


def _flatten(shape: bytes) -> bytes:
    """``shape`` without its innermost objects and arrays, a slice at a time.

    A slice ends just after a closing bracket, which no innermost pair can straddle; so the
    regex's pieces cost a few times the slice, not the body.
    """
    out = bytearray()
    start = 0
    while start < len(shape):
        stop = start + _SLICE_BYTES
        if stop < len(shape):
            cut = max(shape.rfind(b"}", start, stop), shape.rfind(b"]", start, stop))
            if cut < 0:  # no closer in this slice: up to the next one
                later = [i for i in (shape.find(b"}", stop), shape.find(b"]", stop)) if i >= 0]
                cut = min(later) if later else len(shape) - 1
            stop = cut + 1
        out += _INNERMOST.sub(b"", shape[start:stop])
        start = stop
    return bytes(out)


def _structure(body: bytes) -> bytes:
    """The brackets and commas of ``body`` that are outside its strings.

    Between two unescaped quotes is a string; escapes become ``__`` first, pairs left to
    right as JSON reads them (``\\\\`` before ``\\"``). Split a slice at a time so that the
    pieces never cost more than a few times the slice.
    """
    if b"\\" in body:
        body = body.replace(b"\\\\", b"__").replace(b'\\"', b"__")
    out = bytearray()
    inside = False
    for start in range(0, len(body), _SLICE_BYTES):
        pieces = body[start : start + _SLICE_BYTES].split(b'"')
        out += b"".join(pieces[int(inside) :: 2]).translate(None, _NOT_STRUCTURE)
        inside ^= (len(pieces) - 1) % 2 == 1
    return bytes(out)


def _too_many(max_records: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"more than {max_records} records; at most {max_records} per request")


def _checked(record: Any, escapes: bool) -> Any:
    return NOT_JSON if escapes and _has_surrogate(record) else record


def _loads(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return _loads_json(data)


def _loads_json(data: bytes) -> Any:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return NOT_UTF8
    try:
        return json.loads(text, parse_int=_int_or_digits)
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
        return NOT_JSON


def _int_or_digits(digits: str) -> int | str:
    return int(digits) if len(digits.lstrip("-")) <= _MAX_INT_DIGITS else digits


def _has_surrogate(value: Any) -> bool:
    """Whether a lone surrogate is in ``value`` (a loop, not recursion: any depth)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if any("\ud800" <= c <= "\udfff" for c in item):
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
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
        raise RecordError(Reject.NOT_JSON.text()) from None


def check_record(
    record: Any, appid: str | None = None, cuts: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The canonical record, or RecordError naming the field and the problem (``cuts``:
    appid -> its retention cut, yyyy-mm-dd, as ``reject_sql.reason_sql`` takes them)."""
    if isinstance(record, Unreadable):
        raise RecordError(record.reason)
    envelope = check_envelope(record, FIELDS, LENGTH_CHECKED, "duckdb")
    text = envelope.text
    # The fields present, as received, for the output.
    out: dict[str, Any] = {f: record[f] for f in FIELDS if text[f] is not None}
    ts_raw = record.get("ts")
    if ts_raw is None or (isinstance(ts_raw, str) and not ts_raw.strip(SPACES)):
        raise RecordError(Reject.TS_MISSING.text())
    try:
        ts_us = parse_ts_us(ts_raw)
    except ValueError:
        ts_us = None
    if ts_us is None or not -(2**63) < ts_us < 2**63 - 1:  # DuckDB cannot hold it either
        raise RecordError(Reject.TS_INVALID.text(value=ts_raw))
    if not ts_in_range(ts_us):  # day numbers and dates stay representable
        raise RecordError(Reject.TS_RANGE.text(value=ts_raw))
    cut = (cuts or {}).get(envelope.appid)
    if cut is not None and _shanghai_day(ts_us) < cut:
        raise RecordError(Reject.BEFORE_CUT.text(cut=cut.replace("-", ""), value=ts_raw))
    try:
        if text["age"] is not None and not text["age"].isascii():
            raise ValueError(text["age"])  # DuckDB reads ASCII digits only (not １２)
        age = parse_age(text["age"])
    except ValueError:
        raise RecordError(Reject.AGE_INVALID.text(value=text["age"])) from None
    if appid is not None and envelope.appid != appid:
        raise RecordError(Reject.APPID_NOT_TOKENS.text())
    # Other fields keep their JSON value: the bulk reader turns a number into text itself
    # (from the parsed double: 6.103515625e-05 -> '0.00006103515625'), so it must see one.
    out["ts"] = _rfc3339_us(ts_us)
    if age is not None:
        out["age"] = age
    return out


def _shanghai_day(ts_us: int) -> str:
    """The Shanghai day (yyyy-mm-dd) of epoch microseconds (the lake's ``day``)."""
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (epoch + dt.timedelta(microseconds=ts_us)).astimezone(TZ).date().isoformat()


def parse_ts_us(raw: Any) -> int:
    """Epoch microseconds (RFC 3339 keeps sub-millisecond digits; numbers are s or ms).

    Epoch numbers must be integers (docs/semantics.md): bulk files reject ``1718000000.0`` as text
    that is neither an integer nor RFC 3339, so a JSON float is rejected here too.
    """
    if isinstance(raw, float):
        raise ValueError(raw)
    if isinstance(raw, str) and not _INT_TEXT.fullmatch(text := raw.strip(SPACES)):
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
