"""The HTTP path's record checks (``ingest/records.py``) against bulk ingest's SQL checks.

A record must be accepted or rejected for the same reason whichever way it arrives, and an
accepted record's canonical form (what the write-ahead log replays) must store the same
values as the record itself.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import duckdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from userportrait.ingest.pipeline import ingest_file
from userportrait.ingest.records import (
    NOT_JSON,
    TOO_DEEP,
    check_record,
    dump_record,
    parse_records,
)
from userportrait.portrait.rules import MAX_DEPTH, RecordError
from userportrait.settings import Settings
from userportrait.store.expire import expire
from userportrait.store.lake import Lake

A = "wx00000000000000a1"
OK = {"appid": A, "openid": "o1", "ts": "2024-06-10T10:00:00+08:00"}

CASES: list[Any] = [
    OK,
    {**OK, "ts": "2024-06-10T02:00:00Z"},
    {**OK, "ts": "2024-06-10T02:00:00.123456Z"},
    {**OK, "ts": "2024-06-10 10:00:00"},  # naive: Asia/Shanghai wall time
    {**OK, "ts": 1718000000},  # epoch seconds
    {**OK, "ts": 1718000000123},  # epoch milliseconds
    {**OK, "ts": "1718000000"},
    {**OK, "ts": "2024-06-10T10:00:00+08:00\t"},  # trim keeps tabs
    {**OK, "ts": "2024-06-10 10:00:00 +08:00"},
    {**OK, "ts": "2024-06-10T10:00:00 Asia/Shanghai"},  # DuckDB's cast reads zone names
    {**OK, "ts": "2024-06-10T24:00:00"},  # ... and 24:00
    {**OK, "ts": "2024-06-10T10:00:00z"},
    {**OK, "ts": "2024-06-10"},
    {**OK, "ts": "2024-06-10T10:00+0530"},
    {**OK, "ts": 0.0},  # epoch numbers must be integers
    {**OK, "ts": 1718000000.0},
    {**OK, "ts": 253402315489280.0},
    {**OK, "ts": 10**17},  # beyond any calendar: rejected, not a crash
    {**OK, "ts": -62135596800001},  # 1 BC: DuckDB could read it, days could not hold it
    {**OK, "ts": "1969-12-31T23:59:59+08:00"},
    {**OK, "ts": "1970-01-01T00:00:00+08:00"},
    {**OK, "ts": "9999-12-31T23:59:59+08:00"},
    {**OK, "ts": "9999-12-31T16:00:00Z"},
    {**OK, "ts": "yesterday"},
    {**OK, "ts": ""},
    {**OK, "ts": None},
    {"appid": A, "openid": "o1"},
    {**OK, "appid": ""},
    {**OK, "appid": "wx 1"},
    {**OK, "appid": "x" * 300},
    {**OK, "openid": "  "},
    {**OK, "openid": 12345},
    {**OK, "device": "d" * 300},
    {**OK, "age": 30},
    {**OK, "age": "30"},
    {**OK, "age": 30.0},
    {**OK, "age": " 42 "},
    {**OK, "age": 30.5},
    {**OK, "age": -1},
    {**OK, "age": 151},
    {**OK, "age": "thirty"},
    {**OK, "age": ""},
    {**OK, "age": "１２"},  # full-width digits: not for DuckDB, so not here either
    {**OK, "age": "nan"},
    {**OK, "openid": "\u3000"},  # trim removes Unicode spaces ...
    {**OK, "openid": "\t"},  # ... but not tabs
    {**OK, "appid": A + "\u00a0"},
    {**OK, "appid": A + "\n"},  # $ in a Python regex matched before a final newline
    {**OK, "appid": "__HIVE_DEFAULT_PARTITION__"},  # would not round-trip as a partition
    {**OK, "appid": "__hive_Default_partition__"},
    {**OK, "appid": ".."},
    {**OK, "province": "广东", "city": "深圳", "gender": "female", "platform": "ios"},
    {**OK, "province": None, "gender": 1, "platform": 2},
    {**OK, "event_id": "e1"},
    {**OK, "event_id": 7},
    {**OK, "province": {"name": "广东"}},
    {**OK, "city": ["深圳"]},
    {**OK, "gender": True},
    "not an object",
    [1, 2],
]


def python_reason(record: Any) -> str | None:
    try:
        check_record(record)
    except RecordError as exc:
        return str(exc)
    return None


def bulk(
    tmp: Path, name: str, records: list[Any], raw: bytes | None = None
) -> tuple[dict[int, str], list[tuple[Any, ...]]]:
    """Ingest ``records`` (or the NDJSON bytes ``raw``) as one file: (line -> reject
    reason, stored rows)."""
    lake = Lake(Settings(data_dir=tmp / name, duckdb_memory_limit_mb=256))
    path = tmp / f"{name}.ndjson"
    if raw is None:
        raw = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()
    path.write_bytes(raw)
    report = ingest_file(lake, path)
    reasons = {r.line: r.reason for r in report.rejects}
    assert report.rejected == len(reasons)
    paths = [p for a in {A} for p in lake.paths(a)]
    rows: list[tuple[Any, ...]] = []
    if paths:
        rows = duckdb.sql(
            "SELECT openid, epoch_us(ts), event_id, province_id, city_id, gender_id, platform_id, "
            f"age, device FROM read_parquet({paths!r}) ORDER BY ALL"
        ).fetchall()
    return reasons, rows


def assert_same(tmp: Path, records: list[Any], echo: bool = True) -> None:
    """Same verdicts; with ``echo`` also the same echoed raw value after the reason."""
    reasons, rows = bulk(tmp, "raw", records)
    expected = {i + 1: r for i, rec in enumerate(records) if (r := python_reason(rec))}
    if not echo:  # DuckDB and Python print big floats differently (1e+16 vs 1000…0.0)
        reasons = {k: v.split(": ")[0] for k, v in reasons.items()}
        expected = {k: v.split(": ")[0] for k, v in expected.items()}
    assert reasons == expected
    canonical = [check_record(r) for r in records if python_reason(r) is None]
    if canonical:  # replayed as the write-ahead log holds them
        wal = b"".join(dump_record(c) for c in canonical)
        again, replayed = bulk(tmp, "canonical", canonical, wal)
        assert again == {}
        assert replayed == rows


def test_every_case_gets_the_same_verdict_and_values(tmp_path: Path) -> None:
    assert_same(tmp_path, CASES)


_scalar = st.one_of(
    st.none(),
    st.text(max_size=8),
    st.integers(min_value=-(10**14), max_value=10**14),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(["2024-06-10T10:00:00+08:00", "2024-06-10 23:59:59", "1718000000", "广东"]),
)
_record = st.fixed_dictionaries(
    # A file without a ts column at all is a file-level error, so ts is always a key.
    {
        "appid": st.sampled_from([A, "", "bad id", None]),
        "openid": st.sampled_from(["o1", " ", None]),
        "ts": _scalar,
    },
    optional=dict.fromkeys(("age", "province", "gender", "platform", "event_id"), _scalar),
)


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(_record, min_size=1, max_size=12))
def test_random_records_get_the_same_verdict(tmp_path_factory: Any, records: list[Any]) -> None:
    assert_same(tmp_path_factory.mktemp("rec"), records, echo=False)


def test_a_lone_surrogate_is_not_json_either_way(tmp_path: Path) -> None:
    good = json.dumps(OK)
    bad = good.replace('"o1"', '"a\\ud800b"')  # an escape no UTF-8 text can hold
    pair = good.replace('"o1"', '"\\ud83d\\ude00"')  # a valid pair: an emoji
    body = f"{bad}\n{good}\n{pair}\n".encode()
    reasons, _rows = bulk(tmp_path, "surrogate", [], body)
    http = {i + 1: r for i, rec in enumerate(parse_records(body)) if (r := python_reason(rec))}
    assert reasons == http == {1: "not valid JSON"}
    array = parse_records(f"[{bad}, {good}]".encode())
    assert array[0] is NOT_JSON and array[1] == OK


TRICKY = [
    "18446744073709551616",  # beyond 64 bits: orjson would make it a float
    "-123456789012345678901234567890",
    "NaN",
    "1e400",
    '{"a": 1, "a": 2}',
    '{"x": 1e16, "y": -0.0, "z": 5e-324}',
    "[" * 3000 + "]" * 3000,  # deeper than either parser goes
    '"\\u0000"',
    "{",
]


@given(
    st.lists(
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
            | st.text(max_size=6),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
            max_leaves=8,
        ),
        min_size=1, max_size=5,
    )
)  # fmt: skip
def test_http_bodies_parse_as_json_does(values: list[Any]) -> None:
    lines = ['{"first": 1}', *(json.dumps(v) for v in values), *TRICKY]  # NDJSON, not "[...]"
    expected: list[Any] = []
    for line in lines:
        try:
            value = json.loads(line)
        except RecursionError:
            value = TOO_DEEP
        except json.JSONDecodeError:
            value = NOT_JSON
        expected.append(TOO_DEEP if depth(value) > MAX_DEPTH else value)
    got = parse_records("\n".join(lines).encode())
    assert repr(got) == repr(expected)


def depth(value: Any) -> int:
    """How many objects and arrays ``value`` nests (a scalar: 0)."""
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


def test_events_before_the_retention_cut_get_the_same_reason(tmp_path: Path) -> None:
    lake = Lake(Settings(data_dir=tmp_path / "cut", duckdb_memory_limit_mb=256))
    first = tmp_path / "first.ndjson"
    first.write_text(json.dumps({**OK, "ts": "2024-06-01T10:00:00+08:00"}) + "\n")
    assert ingest_file(lake, first).accepted == 1
    expire(lake, dt.date(2024, 6, 10), A)
    records = [
        {**OK, "ts": "2024-06-09T23:59:59+08:00"},
        {**OK, "ts": "2024-06-09T16:00:00Z"},  # 06-10 00:00 in Shanghai: kept
        {**OK, "ts": 1717862400000, "age": "x"},  # 06-09 by epoch ms: the cut comes first
        {**OK, "appid": "wxother", "ts": "2024-06-09T10:00:00+08:00"},  # not expired
    ]
    path = tmp_path / "late.ndjson"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    report = ingest_file(lake, path)
    cuts = {A: "2024-06-10"}
    python: dict[int, str] = {}
    for line, record in enumerate(records, 1):
        try:
            check_record(record, cuts=cuts)
        except RecordError as exc:
            python[line] = str(exc)
    assert (
        {r.line: r.reason for r in report.rejects}
        == python
        == {
            1: "ts is before the retention cut 20240610 of its app: 2024-06-09T23:59:59+08:00",
            3: "ts is before the retention cut 20240610 of its app: 1717862400000",
        }
    )
