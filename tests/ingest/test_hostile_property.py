"""Issue 10's property: random mixtures of good and hostile records, live route and file path.

Every good record is counted exactly once, every bad one is reported with its index (line)
and reason, the same reason either way, and parsing a body costs memory in proportion to
it. Good records carry ``ts`` anywhere in the accepted range (1970..9999, Asia/Shanghai),
text with U+2028, U+0085, escapes and astral characters; bodies come as NDJSON with ``\\n``
or ``\\r\\n`` line ends, plain or as one to three gzip members.
"""

from __future__ import annotations

import datetime as dt
import gzip
import itertools
import json
import time
import tracemalloc
from typing import Any

import anyio
import duckdb
import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tests.ingest.test_live import SECRET, A
from tests.server import asgi_client, ingest_headers
from userportrait.api.body import Gunzip
from userportrait.auth.store import AuthStore
from userportrait.ingest.pipeline import ingest_file
from userportrait.ingest.records import check_record, parse_records
from userportrait.portrait.rules import Reject
from userportrait.settings import Settings
from userportrait.store.lake import Lake

_TS_MIN = dt.datetime(1969, 12, 31, 16, tzinfo=dt.UTC)  # 1970-01-01 00:00 Asia/Shanghai
_TS_END = dt.datetime(9999, 12, 31, 16, tzinfo=dt.UTC)
_ids = itertools.count()
#: Characters that split or escape badly: line separators, quotes, astral planes. No
#: spaces: the lake keeps openid trimmed, and these tests look openids up there.
TEXT = st.text(
    alphabet=st.sampled_from(["a", "é", "广", "\u2028", "\u0085", "\u2029", '"', "\\", "😀"]),
    max_size=6,
)


@st.composite
def good_record(draw: st.DrawFn) -> tuple[bytes, None, str]:
    seconds = draw(st.integers(0, int((_TS_END - _TS_MIN).total_seconds()) - 1))
    moment = _TS_MIN + dt.timedelta(seconds=seconds)
    ms = int(moment.timestamp() * 1000)
    ts: Any = (
        ms
        if ms >= 100_000_000_000 and draw(st.booleans())
        else moment.strftime("%Y-%m-%dT%H:%M:%S") + draw(st.sampled_from(["Z", "+08:00", "-05:30"]))
    )
    if isinstance(ts, str) and not ts.endswith("Z"):  # the same instant, another offset
        offset = dt.timedelta(hours=8) if ts.endswith("+08:00") else -dt.timedelta(hours=5.5)
        local = (moment + offset).strftime("%Y-%m-%dT%H:%M:%S")
        ts = local + ts[-6:]
    openid = f"g{next(_ids)}-" + draw(TEXT)
    record: dict[str, Any] = {"appid": A, "openid": openid, "ts": ts}
    for field in draw(st.sets(st.sampled_from(["province", "city", "gender", "device", "x"]))):
        record[field] = draw(TEXT) or "x"
    if draw(st.booleans()):
        record["age"] = draw(st.integers(0, 150))
    line = json.dumps(record, ensure_ascii=draw(st.booleans())).encode()
    return line, None, openid


def _line(**fields: Any) -> str:
    return json.dumps({"appid": A, "openid": "bad", "ts": "2024-06-10T10:00:00Z", **fields})


@st.composite
def hostile_record(draw: st.DrawFn) -> tuple[bytes, str, None]:
    kind = draw(st.sampled_from(["json", "surrogate", "utf8", "deep", "digits", "ts", "object"]))
    if kind == "json":
        return _line()[: draw(st.integers(1, 20))].encode(), "not valid JSON", None
    if kind == "surrogate":
        return _line(openid="a\ud800b").encode(), "not valid JSON", None
    if kind == "utf8":
        return (
            _line(openid="caf\xff").replace("\\u00ff", "\udcff").encode("utf-8", "surrogateescape"),
            "not valid UTF-8",
            None,
        )
    if kind == "deep":  # as deep as a record goes over HTTP (a file reads any depth)
        line = _line()[:-1] + ', "device": ["\\u00e9"]}'
        return line.encode(), "device has the wrong type (array)", None
    if kind == "digits":
        line = _line().replace('"bad"', "7" * draw(st.integers(300, 6000)))
        return line.encode(), "openid is longer than 256 characters", None
    if kind == "ts":
        ts = draw(st.sampled_from(["1969-12-31T15:59:59Z", "9999-12-31T16:00:00Z"]))
        return _line(ts=ts).encode(), Reject.TS_RANGE.text(value=ts), None
    return b"[1, 2]", "not a JSON object", None


#: A body whose first record is an array is read as one JSON array (docs/ingest.md).
MIXTURE = st.lists(st.one_of(good_record(), hostile_record()), min_size=1, max_size=12).filter(
    lambda items: not items[0][0].startswith(b"[")
)
FRAMING = st.tuples(st.sampled_from([b"\n", b"\r\n"]), st.integers(0, 3))  # line end, gzip members


def body_of(items: list[tuple[bytes, str | None, str | None]], end: bytes, members: int) -> bytes:
    lines = [line + end for line, _, _ in items]
    if not members:
        return b"".join(lines)
    cut = [len(lines) * i // members for i in range(members + 1)]
    return b"".join(gzip.compress(b"".join(lines[a:b])) for a, b in itertools.pairwise(cut))


def expected_rejects(items: list[tuple[bytes, str | None, str | None]]) -> list[tuple[int, str]]:
    return [(i, reason) for i, (_, reason, _) in enumerate(items) if reason]


def lake_counts(lake: Lake) -> dict[str, int]:
    paths = lake.paths(A)
    if not paths:
        return {}
    rows = duckdb.sql(f"SELECT openid, count(*) FROM read_parquet({paths}) GROUP BY openid")
    return dict(rows.fetchall())


@hsettings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(MIXTURE, FRAMING)
def test_parsing_costs_memory_in_proportion_to_the_body(
    items: list[tuple[bytes, str | None, str | None]], framing: tuple[bytes, int]
) -> None:
    body = body_of(items, *framing)
    tracemalloc.start()
    try:
        raw = Gunzip(len(body) * 1000 + 10**6).feed(body) if framing[1] else body
        reasons = []
        for i, record in enumerate(parse_records(raw, max_records=10_000)):
            try:
                check_record(record, A)
            except ValueError as exc:
                reasons.append((i, str(exc)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert reasons == expected_rejects(items)
    assert peak < 64 * len(raw) + 256 * 1024


@hsettings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(MIXTURE, FRAMING)
def test_file_path_counts_each_good_record_once(
    tmp_path_factory: pytest.TempPathFactory,
    items: list[tuple[bytes, str | None, str | None]],
    framing: tuple[bytes, int],
) -> None:
    tmp = tmp_path_factory.mktemp("prop")
    lake = Lake(Settings(data_dir=tmp / "data", duckdb_memory_limit_mb=512))
    src = tmp / ("events.ndjson.gz" if framing[1] else "events.ndjson")
    src.write_bytes(body_of(items, *framing))
    report = ingest_file(lake, src)
    assert [(r.line - 1, r.reason) for r in report.rejects] == expected_rejects(items)
    good = [openid for _, _, openid in items if openid]
    assert report.accepted == len(good)
    assert lake_counts(lake) == dict.fromkeys(good, 1)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_live_route_counts_each_good_record_once(settings: Settings) -> None:
    AuthStore(settings.data_dir / "meta.sqlite").add_app(A, SECRET)
    live = settings.replace(wechat_limits=False, live_flush_interval_ms=100)
    sent: list[str] = []
    async with asgi_client(live) as c:
        w = ingest_headers(live, A)

        @hsettings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
        @given(MIXTURE, FRAMING)
        def check(
            items: list[tuple[bytes, str | None, str | None]], framing: tuple[bytes, int]
        ) -> None:
            headers = {**w, "content-encoding": "gzip"} if framing[1] else w
            body = body_of(items, *framing)

            async def post() -> httpx.Response:
                return await c.post("/v1/events", content=body, headers=headers)

            res = anyio.from_thread.run(post)
            answer = res.json()
            assert answer["errcode"] == 0, answer
            assert [(r["index"], r["reason"]) for r in answer["rejected"]] == expected_rejects(
                items
            )
            good = [openid for _, _, openid in items if openid]
            assert answer["accepted"] == len(good)
            sent.extend(good)

        await anyio.to_thread.run_sync(check)
        lake = Lake(live)
        deadline = time.monotonic() + 30
        while lake_counts(lake) != dict.fromkeys(sent, 1):
            assert time.monotonic() < deadline, "not every acknowledged record reached the lake"
            await anyio.sleep(0.1)
    assert len(sent) == len(set(sent))
