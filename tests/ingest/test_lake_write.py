"""The bulk lake write's shortcuts (issue 14) keep the lake as it was: the Shanghai day by
integer arithmetic after 1991, raw text written as ENUMs (read back as strings, capped),
rules specialised to a Parquet file's types and decided per distinct appid."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import load
from userportrait import sqlrows
from userportrait.ingest import reject_sql
from userportrait.ingest.pipeline import IngestReport, ingest_file
from userportrait.sqlrows import raw_type
from userportrait.sqltext import shanghai_day_sql, trimmed_sql
from userportrait.store.lake import Lake

A = "wxa000000000000001"
SHANGHAI = ZoneInfo("Asia/Shanghai")
#: China's daylight-saving changes (1986-1991; 02:00 local), each +/- a second and an hour.
DST_CHANGES = [
    dt.datetime(1986, 5, 4, 2), dt.datetime(1986, 9, 14, 2), dt.datetime(1987, 4, 12, 2),
    dt.datetime(1987, 9, 13, 2), dt.datetime(1988, 4, 17, 2), dt.datetime(1988, 9, 11, 2),
    dt.datetime(1989, 4, 16, 2), dt.datetime(1989, 9, 17, 2), dt.datetime(1990, 4, 15, 2),
    dt.datetime(1990, 9, 16, 2), dt.datetime(1991, 4, 14, 2), dt.datetime(1991, 9, 15, 2),
]  # fmt: skip


def _instants() -> list[int]:
    """Epoch microseconds around each change, around local midnights in summer time, at
    the fast path's boundary (1992-01-01 +08) and at random from 1970 to 2100."""
    out: list[int] = []
    for change in DST_CHANGES:
        utc = change.replace(tzinfo=dt.timezone(dt.timedelta(hours=8)))
        for delta in (-3600, -1, 0, 1, 3600, 22 * 3600 - 1, 22 * 3600, 23 * 3600 - 1, 23 * 3600):
            out.append(int((utc.timestamp() + delta) * 1_000_000))
    edge = int(dt.datetime(1992, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=8))).timestamp())
    out += [(edge + d) * 1_000_000 for d in (-86400, -1, 0, 1)]
    rng = random.Random(14)
    out += [rng.randrange(0, 4_102_444_800_000_000) for _ in range(500)]
    return out


def test_shanghai_day_equals_the_time_zone_conversion() -> None:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'Asia/Shanghai'")
    instants = _instants()
    con.register("t", pa.table({"us": pa.array(instants, pa.int64())}))
    rows = con.execute(
        f"SELECT us, {shanghai_day_sql('ts')}, CAST(timezone('Asia/Shanghai', ts) AS DATE) "
        "FROM (SELECT us, make_timestamptz(us) AS ts FROM t)"
    ).fetchall()
    for us, fast, converted in rows:
        python = dt.datetime.fromtimestamp(us / 1_000_000, SHANGHAI).date()
        assert fast == converted == python, us


def test_events_in_summer_time_land_on_their_shanghai_day(lake: Lake) -> None:
    # 1988-06-01 23:30 Shanghai summer time (+09) is 14:30Z: still June 1 (at +08 it would
    # read 22:30, the same day); 00:30 +09 on June 2 is 15:30Z June 1, June 2 in Shanghai.
    report = load(
        lake,
        [
            {"appid": A, "openid": "u1", "ts": "1988-06-01T14:30:00Z"},
            {"appid": A, "openid": "u2", "ts": "1988-06-01T15:30:00Z"},
            {"appid": A, "openid": "u3", "ts": "1991-09-14T15:30:00Z"},  # 00:30 +09, last day
            {"appid": A, "openid": "u4", "ts": "1991-09-15T15:30:00Z"},  # 23:30 +08
        ],
    )
    assert report.accepted == 4
    assert {f.day: f.rows for f in lake.files(A)} == {
        "1988-06-01": 1,
        "1988-06-02": 1,
        "1991-09-15": 2,
    }


def test_raw_type_is_a_sorted_enum_of_few_values() -> None:
    assert raw_type(["b", None, "a", "b", "é", "z"]) == "ENUM('a', 'b', 'z', 'é')"
    assert raw_type([None]) == "VARCHAR"
    assert raw_type(["it's"]) == "ENUM('it''s')"
    many = [f"v{i}" for i in range(sqlrows.MAX_ENUM_VALUES + 1)]
    assert raw_type(many) == "VARCHAR"
    assert raw_type(["x" * (sqlrows.MAX_LITERAL_CHARS + 1)]) == "VARCHAR"


EVENTS: list[dict[str, Any]] = [
    {"appid": A, "openid": f"u{i}", "ts": f"2025-03-0{1 + i % 3}T0{i % 10}:00:00Z",
     "province": p, "city": c, "gender": g, "platform": pl, "device": d, "age": age}
    for i, (p, c, g, pl, d, age) in enumerate([
        ("广东", "深圳", "male", "iOS", "iPhone 15", 30),
        ("广东省", "广州", "女", "android", " Mi 14 ", 17),
        (None, None, None, None, None, None),
        ("浙江", "杭州市", "1", "Devtools", "", 0),
        ("Beijing", "", "f", "ios", "iPhone 15", 150),
        ("火星", "o'clock", "?", "x", "Pixel", 61),
    ] * 3)
]  # fmt: skip


def _lake_rows(lake: Lake) -> list[tuple[Any, ...]]:
    return duckdb.sql(
        f"SELECT * EXCLUDE (batch_id) FROM read_parquet({lake.paths(A)}, hive_partitioning=true) "
        "ORDER BY ALL"
    ).fetchall()


def _write_parquet(path: Path, events: list[dict[str, Any]], age: pa.DataType) -> Path:
    table = pa.table(
        {
            "appid": [e["appid"] for e in events],
            "openid": [e["openid"] for e in events],
            "ts": pa.array(
                [dt.datetime.fromisoformat(e["ts"]) for e in events], pa.timestamp("us", "UTC")
            ),
            **{k: [e[k] for e in events] for k in ("province", "city", "gender", "platform")},
            "device": [e["device"] for e in events],
            "age": pa.array([e["age"] for e in events], age),
        }
    )
    pq.write_table(table, path)
    return path


def test_raw_text_is_written_as_a_dictionary_and_read_back_as_strings(
    lake: Lake, tmp_path: Path
) -> None:
    report = ingest_file(lake, _write_parquet(tmp_path / "e.parquet", EVENTS, pa.int16()))
    assert report.accepted == len(EVENTS)
    path = lake.root / lake.files(A)[0].path
    schema = pq.read_schema(path)
    raw = ("province_raw", "city_raw", "gender_raw", "platform_raw", "device")
    assert [str(schema.field(c).type) for c in raw] == ["string"] * 5
    types = duckdb.sql(f"SELECT {', '.join(raw)} FROM read_parquet('{path}')").types
    assert [str(t) for t in types] == ["VARCHAR"] * 5
    column = pq.ParquetFile(path).metadata.row_group(0).column(schema.get_field_index("city_raw"))
    assert "RLE_DICTIONARY" in column.encodings
    got = duckdb.sql(
        f"SELECT openid, province_raw, city_raw, gender_raw, platform_raw, device "
        f"FROM read_parquet({lake.paths(A)}) WHERE openid IN ('u1', 'u3', 'u5') ORDER BY openid"
    ).fetchall()
    assert got == [
        ("u1", "广东省", "广州", "女", "android", "Mi 14"),
        ("u3", "浙江", "杭州市", "1", "Devtools", None),
        ("u5", "火星", "o'clock", "?", "x", "Pixel"),
    ]


@pytest.mark.parametrize("age", [pa.int16(), pa.int64(), pa.uint8(), pa.float64(), pa.string()])
def test_a_typed_parquet_file_makes_the_lake_of_its_ndjson(
    tmp_path: Path, age: pa.DataType, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Typed ts and age (no text round trip), ENUMs under a cap of 3 values (some columns
    over it, so VARCHAR) and the same rows as the text file gives without the cap."""
    events = [
        {
            **e,
            "age": None
            if e["age"] is None
            else (str(e["age"]) if age == pa.string() else e["age"]),
        }
        for e in EVENTS
    ]
    text = Lake(settings.replace(data_dir=tmp_path / "text"))
    load(text, EVENTS)
    monkeypatch.setattr(sqlrows, "MAX_ENUM_VALUES", 3)
    typed = Lake(settings.replace(data_dir=tmp_path / "typed"))
    ingest_file(typed, _write_parquet(tmp_path / "e.parquet", events, age))
    assert _lake_rows(typed) == _lake_rows(text)
    assert len(_lake_rows(text)) == len(EVENTS)


BAD: list[dict[str, Any]] = [
    {"appid": A, "openid": "ok1", "ts": "2025-03-01T00:00:00Z", "age": 5},
    {"appid": A, "openid": "young", "ts": "2025-03-01T00:00:00Z", "age": -1},
    {"appid": A, "openid": "old", "ts": "2025-03-01T00:00:00Z", "age": 151},
    {"appid": A, "openid": "early", "ts": "1969-12-31T15:59:59Z", "age": 3},
    {"appid": A, "openid": "late", "ts": "9999-12-31T16:00:00Z", "age": None},
    {"appid": A, "openid": "nots", "ts": None, "age": 20},
    {"appid": A, "openid": " ", "ts": "2025-03-01T00:00:00Z", "age": 20},
    {"appid": None, "openid": "noapp", "ts": "2025-03-01T00:00:00Z", "age": 20},
    {"appid": "  ", "openid": "blankapp", "ts": "2025-03-01T00:00:00Z", "age": 20},
    {"appid": "wx bad", "openid": "badapp", "ts": "2025-03-01T00:00:00Z", "age": 20},
    {"appid": "wx-bad", "openid": "x" * 257, "ts": "2025-03-01T00:00:00Z", "age": 20},
    {"appid": "a" * 257, "openid": "longapp", "ts": "2025-03-01T00:00:00Z", "age": 20},
    {"appid": "__HIVE_default_partition__", "openid": "hive", "ts": "2025-03-01T00:00:00Z"},
    {"appid": f" {A} ", "openid": "spaced", "ts": "2025-03-01T00:00:00Z", "age": 20},
]


def _rejects(report: IngestReport) -> list[tuple[int, str]]:
    return [(r.line, r.reason) for r in report.rejects]


@pytest.mark.parametrize(
    ("appid_cap", "literal_chars"), [(1000, 1 << 18), (2, 1 << 18), (1000, 10)]
)
def test_typed_rejects_read_as_the_text_ones(
    tmp_path: Path,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    appid_cap: int,
    literal_chars: int,
) -> None:
    """Reasons and lines are the same from a typed Parquet file as from NDJSON, with the
    appid rules decided per distinct appid or (over the caps) on every row."""
    monkeypatch.setattr(reject_sql, "MAX_APPID_VALUES", appid_cap)
    monkeypatch.setattr(sqlrows, "MAX_LITERAL_CHARS", literal_chars)
    text = Lake(settings.replace(data_dir=tmp_path / "text"))
    from_text = load(text, BAD)
    typed = Lake(settings.replace(data_dir=tmp_path / "typed"))
    table = pa.table(
        {
            "appid": [e["appid"] for e in BAD],
            "openid": [e["openid"] for e in BAD],
            "ts": pa.array(
                [None if e["ts"] is None else dt.datetime.fromisoformat(e["ts"]) for e in BAD],
                pa.timestamp("us", "UTC"),
            ),
            "age": pa.array([e.get("age") for e in BAD], pa.int16()),
        }
    )
    pq.write_table(table, tmp_path / "bad.parquet")
    from_typed = ingest_file(typed, tmp_path / "bad.parquet")
    assert (from_typed.accepted, from_typed.rejected) == (from_text.accepted, from_text.rejected)
    assert (from_typed.accepted, from_typed.rejected) == (2, 12)
    assert _rejects(from_typed) == [
        (2, "age is not a whole number of years in 0..150: -1"),
        (3, "age is not a whole number of years in 0..150: 151"),
        (4, "ts is outside the years 1970..9999 (Asia/Shanghai): 1969-12-31 23:59:59+08"),
        (5, "ts is outside the years 1970..9999 (Asia/Shanghai): 10000-01-01 00:00:00+08"),
        (6, "ts is missing"),
        (7, "openid is missing"),
        (8, "appid is missing"),
        (9, "appid is missing"),
        (10, "appid is not a valid appid (letters, digits, _ . - only)"),
        (11, "openid is longer than 256 characters"),
        (12, "appid is longer than 256 characters"),
        (
            13,
            "appid __HIVE_DEFAULT_PARTITION__ is reserved (the Hive name of a missing value)",
        ),
    ]
    # The text file quotes its own ts text; every other reason is the same.
    text_reasons = _rejects(from_text)
    assert [r for r in text_reasons if "ts is outside" not in r[1]] == [
        r for r in _rejects(from_typed) if "ts is outside" not in r[1]
    ]
    assert [f.appid for f in typed.catalog.files()] == [A]  # " A " trimmed into A
    assert _lake_rows(typed) == _lake_rows(text)


def test_duplicates_keep_the_first_by_device_text_not_by_enum_position(lake: Lake) -> None:
    """The dedup order ends with ``device``, written as an ENUM: its values go in sorted, so
    that it sorts as the text did ('Mi' before 'iPhone', which came first in the file)."""
    same = {"appid": A, "openid": "u1", "ts": "2025-03-01T00:00:00Z", "event_id": "e1"}
    report = load(lake, [{**same, "device": d} for d in ("iPhone", "Mi", "Pixel")])
    assert (report.accepted, report.duplicates) == (1, 2)
    got = duckdb.sql(f"SELECT device FROM read_parquet({lake.paths(A)})").fetchall()
    assert got == [("Mi",)]


@pytest.mark.parametrize(
    ("appids", "files"),
    [
        ([A, A, None], {(A, "2025-03-01"): 2}),  # one appid: from the statistics
        ([A, "wxb", None], {(A, "2025-03-01"): 1, ("wxb", "2025-03-01"): 1}),  # grouped
        ([None, None, None], {}),
    ],
)
def test_parquet_appids_and_bounds(
    lake: Lake, tmp_path: Path, appids: list[str | None], files: dict[tuple[str, str], int]
) -> None:
    """The rejected row without an appid lies on another day: the batch is not one
    partition, though its one appid's rows are."""
    table = pa.table(
        {
            "appid": pa.array(appids, pa.string()),
            "openid": ["u1", "u2", "u3"],
            "ts": pa.array(
                [dt.datetime(2025, 3, 1, 1, tzinfo=dt.UTC)] * 2
                + [dt.datetime(2025, 3, 5, 1, tzinfo=dt.UTC)],
                pa.timestamp("us", "UTC"),
            ),
        }
    )
    pq.write_table(table, tmp_path / "e.parquet")
    report = ingest_file(lake, tmp_path / "e.parquet")
    assert (report.accepted, report.rejected) == (sum(files.values()), 3 - sum(files.values()))
    assert {(f.appid, f.day): f.rows for f in lake.catalog.files()} == files


TS_TEXTS = ["1740787200000", "-5", "1740787200", "99999999999999999", "0"]  # epoch s or ms
NAIVE = ["2025-03-01 08:00:00", "1969-12-31 23:00:00", "2025-03-02 10:30:00"]


@pytest.mark.parametrize(
    ("column", "texts"),
    [
        (pa.array([int(t) for t in TS_TEXTS], pa.int64()), TS_TEXTS),
        (pa.array([dt.datetime.fromisoformat(t) for t in NAIVE], pa.timestamp("us")), NAIVE),
        (pa.array(NAIVE, pa.string()), NAIVE),
    ],
)
def test_parquet_ts_of_any_type_reads_as_its_text(
    tmp_path: Path, settings: Any, column: pa.Array, texts: list[str]
) -> None:
    """Epoch integers, naive timestamps (Shanghai wall time) and text in a Parquet file give
    the lake and the rejects (quoting the ts's text) of the same texts in NDJSON."""
    rows = [{"appid": A, "openid": f"u{i}", "ts": t} for i, t in enumerate(texts)]
    text = Lake(settings.replace(data_dir=tmp_path / "text"))
    from_text = load(text, rows)
    typed = Lake(settings.replace(data_dir=tmp_path / "typed"))
    table = pa.table(
        {"appid": [A] * len(texts), "openid": [r["openid"] for r in rows], "ts": column}
    )
    pq.write_table(table, tmp_path / "ts.parquet")
    from_typed = ingest_file(typed, tmp_path / "ts.parquet")
    assert _rejects(from_typed) == _rejects(from_text)
    assert from_typed.rejected >= 1
    assert _lake_rows(typed) == _lake_rows(text)


#: Texts around the shortcuts of the text rules: spaces (ASCII and the Unicode separators
#: DuckDB's trim strips), tabs (kept), multi-byte characters, and the length limit in
#: characters against bytes.
TRICKY_TEXTS = [
    "abc", " abc", "abc ", "  ", "", "\u3000x", "x\u00a0", "\u3000", "\u2008 \u3000",
    "é", " é ", "\tabc", "abc\t", "a" * 256, "a" * 257, "é" * 200, "é" * 256, "é" * 257,
]  # fmt: skip


@pytest.mark.parametrize("text", TRICKY_TEXTS)
def test_text_rule_shortcuts_agree_with_the_plain_rules(text: str) -> None:
    con = duckdb.connect()
    trimmed, blank, too_long = con.execute(
        f"SELECT {trimmed_sql('$1')}, {reject_sql.blank_sql('$1')}, "
        f"{reject_sql.too_long_sql('$1')}",
        [text],
    ).fetchall()[0]
    plain = con.execute("SELECT trim($1), trim($1) = '', length($1) > 256", [text]).fetchall()
    assert (trimmed, blank, too_long) == plain[0]
