"""Issue 10: bad input never breaks the store — one test per defect (2, 3, 4, 5, 9, 10)."""

from __future__ import annotations

import gzip
import json
import logging
import socket
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from tests.ingest.test_live import SECRET as LIVE_SECRET
from tests.ingest.test_live import A, ev
from tests.server import CLOUD, PATH, asgi_client, ingest_headers, live_server, prepare, token
from userportrait.auth.store import AuthStore
from userportrait.errors import PayloadTooLarge
from userportrait.ingest.pipeline import ingest_file
from userportrait.ingest.records import _array_length, parse_records
from userportrait.settings import Settings
from userportrait.store.lake import Lake

STABLE = "/cgi-bin/stable_token"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def live_settings(settings: Settings) -> Settings:
    AuthStore(settings.data_dir / "meta.sqlite").add_app(A, LIVE_SECRET)
    return settings.replace(wechat_limits=False, live_flush_interval_ms=100)


async def post_events(settings: Settings, body: bytes, **headers: str) -> httpx.Response:
    async with asgi_client(settings) as c:
        res = await c.post("/v1/events", content=body,
                           headers={**ingest_headers(settings, A), **headers})  # fmt: skip
        return res


def lines(*records: Any) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in records)


# -- 2: NDJSON splits on \n (and \r\n) only ---------------------------------------------------
@pytest.mark.anyio
async def test_line_separators_inside_strings_do_not_split_records(live_settings: Settings) -> None:
    body = lines(ev(1, device="a\u2028b"), ev(2, province="x\u0085y"), ev(3)).replace(
        b"\n", b"\r\n"
    )
    assert [r["openid"] for r in parse_records(body)] == ["u1", "u2", "u3"]
    res = await post_events(live_settings, body)
    assert res.json() == {"errcode": 0, "errmsg": "ok", "accepted": 3, "rejected": []}


# -- 3: every gzip member, and trailing garbage refused ---------------------------------------
@pytest.mark.anyio
async def test_every_gzip_member_is_read(live_settings: Settings) -> None:
    body = gzip.compress(lines(ev(1), ev(2))) + gzip.compress(lines(ev(3)))
    res = await post_events(live_settings, body, **{"content-encoding": "gzip"})
    assert res.json() == {"errcode": 0, "errmsg": "ok", "accepted": 3, "rejected": []}


@pytest.mark.anyio
async def test_trailing_garbage_after_gzip_is_refused(live_settings: Settings) -> None:
    body = gzip.compress(lines(ev(1))) + b"garbage"
    res = await post_events(live_settings, body, **{"content-encoding": "gzip"})
    assert res.json()["errcode"] == 47001
    assert res.json()["errmsg"].startswith(
        "data format error: body is not valid gzip (data after member 1 is not a gzip member)"
    )


# -- 4: deep nesting, huge numbers, lone surrogates: per record, per route --------------------
def deep(levels: int) -> str:
    return "[" * levels + '"\\u00e9"' + "]" * levels


@pytest.mark.anyio
async def test_hostile_records_are_rejected_one_by_one(live_settings: Settings) -> None:
    good = json.dumps(ev(1))
    body = "\n".join([
        good,
        good[:-1] + ', "x": {"a": 1}}',  # unknown field: ignored, as in a file
        good[:-1] + ', "device": ["x"]}',
        good[:-1] + f', "x": {deep(2)}}}',  # deeper than a record goes (issue 24)
        good[:-1] + f', "device": {deep(5000)}}}',
        good[:-1] + ', "x": ' + "7" * 5000 + "}",
        good[:-1] + ', "openid": ' + "7" * 5000 + "}",
        json.dumps(ev(2)),
    ]).encode()  # fmt: skip
    res = await post_events(live_settings, body)
    deeper = "nested deeper than 2 levels (a record is an object of scalars)"
    assert res.json() == {
        "errcode": 0, "errmsg": "ok", "accepted": 4,
        "rejected": [
            {"index": 2, "reason": "device has the wrong type (array)"},
            {"index": 3, "reason": deeper},
            {"index": 4, "reason": deeper},
            {"index": 6, "reason": "openid is longer than 256 characters"},
        ],
    }  # fmt: skip


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "body", "errcode"),
    [
        (PATH, b"[" * 50_000, 47001),
        (PATH, b'{"begin_date": ' + b"1" * 5000 + b"}", 47001),
        (CLOUD, b"[" * 50_000, 47001),
        (STABLE, b"[" * 50_000, 47001),
        (STABLE, b'{"grant_type": "client_credential", "appid": "x", "secret": "\\ud800"}', 47001),
        (STABLE, b'{"grant_type": "client_credential", "a": ' + b"1" * 5000 + b"}", 47001),
        (STABLE, b"\xef\xbb\xbf" + json.dumps({"grant_type": "client_credential"}).encode(), 41002),
    ],
)
async def test_hostile_bodies_get_their_errcode_and_no_traceback(
    api_settings: Settings, path: str, body: bytes, errcode: int, caplog: pytest.LogCaptureFixture
) -> None:
    async with asgi_client(api_settings) as c:
        params = {"access_token": await token(c)}
        res = await c.post(path, params=params, content=body)
    answer = res.json()
    assert answer.get("errcode", answer.get("errCode")) == errcode, answer
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# -- 5: memory in proportion to the request, 413 early ----------------------------------------
def test_records_are_counted_while_parsing() -> None:
    body = b"{}\n" * 1_000_000
    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooLarge, match="more than 10000 records"):
            parse_records(body, max_records=10_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * len(body)  # the old code: 80x
    small = b"[" + b",".join([b"{}"] * 20_000) + b"]"  # parsed, then counted
    with pytest.raises(PayloadTooLarge, match="more than 10000 records"):
        parse_records(small, max_records=10_000)
    # A large array is counted before it is parsed; strings may hold brackets and commas.
    array = b"[" + b",".join([b'{"a": "x,]}", "b": [1, "[{", 2]}'] * 150_000) + b"]"
    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooLarge, match="more than 10000 records"):
            parse_records(array, max_records=10_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * len(array)  # parsing it would take 30x
    assert len(parse_records(array, max_records=150_000)) == 150_000
    escaped = b'[{"a": "\\"]"}, "x\\\\", 1, [2, "]"]]'  # an escaped quote: the regex way
    assert _array_length(escaped) == 4 == len(orjson.loads(escaped))


@pytest.mark.anyio
async def test_every_route_limits_its_body(api_settings: Settings) -> None:
    small = api_settings.replace(max_body_bytes=1000)
    async with asgi_client(small) as c:
        params = {"access_token": await token(c)}
        big = json.dumps({"grant_type": "client_credential", "pad": "x" * 2000}).encode()
        for path in (STABLE, PATH, CLOUD):
            res = await c.post(path, params=params, content=big)
            answer = res.json()
            assert res.status_code == 413, (path, res.text)
            assert answer.get("errcode", answer.get("errCode")) == 45002, (path, res.text)
        res = await c.post(STABLE, json={"grant_type": "client_credential", "appid": "wx"})
        assert res.status_code == 200  # small bodies pass


@pytest.mark.anyio
async def test_an_over_limit_body_is_refused_while_it_streams_in(live_settings: Settings) -> None:
    small = live_settings.replace(live_max_body_bytes=100_000)
    pulled = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(1000):  # 64 MB if all were read
            pulled += 1
            yield b" " * 65536

    async with asgi_client(small) as c:
        w = ingest_headers(small, A)
        res = await c.post("/v1/events", headers=w, content=chunks())
        assert res.status_code == 413 and res.json()["errcode"] == 45002
        assert pulled <= 3
        # A Content-Length over the limit is refused before any of the body is read.
        pulled = 0
        res = await c.post("/v1/events", content=chunks(),
                           headers={**w, "content-length": str(64 * 2**20)})  # fmt: skip
        assert res.status_code == 413 and pulled <= 1
        # gzip: the decoded size counts, and decoding stops at the limit.
        bomb = gzip.compress(b" " * 50_000_000)
        res = await c.post("/v1/events", content=bomb,
                           headers={**w, "content-encoding": "gzip"})  # fmt: skip
        assert res.status_code == 413 and res.json()["errcode"] == 45002


# -- 10: slow clients time out; a client that leaves is an INFO line --------------------------
def test_slow_and_idle_clients_are_timed_out(
    live_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    quick = prepare(live_settings).replace(http_read_timeout_s=0.5, http_idle_timeout_s=0.5)
    with live_server(quick) as url:
        host, port = url.removeprefix("http://").split(":")

        def answer(payload: bytes) -> tuple[bytes, float]:
            """What the server sends before it closes, and after how long."""
            start = time.monotonic()
            got = b""
            with socket.create_connection((host, int(port)), timeout=10) as s:
                if payload:
                    s.sendall(payload)
                while chunk := s.recv(4096):
                    got += chunk
            return got, time.monotonic() - start

        got, waited = answer(b"")  # idle: never sent a byte
        assert got == b"" and waited < 5
        got, waited = answer(b"POST /cgi-bin/stable_token HTTP/1.1\r\nHost: x\r\n")
        assert got.startswith(b"HTTP/1.1 408 ") and waited < 5
        slow_body = (
            b"POST /cgi-bin/stable_token HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"
        )
        with caplog.at_level(logging.INFO):
            got, waited = answer(slow_body)
            assert got.startswith(b"HTTP/1.1 408 ") and waited < 5
            # A client that leaves in the middle of its body.
            with socket.create_connection((host, int(port)), timeout=10) as s:
                s.sendall(slow_body)
                time.sleep(0.1)
            time.sleep(0.3)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert "client disconnected" in caplog.text


# -- 24: headers trickled a line at a time; many connections from one address ---------------
def test_trickled_headers_are_bounded_in_total(live_settings: Settings) -> None:
    """The read timer starts again at every byte; the headers' own deadline does not: a line
    every 0.3 s against a 0.5 s read timeout is cut off 1 s after the first byte."""
    quick = prepare(live_settings).replace(
        http_read_timeout_s=0.5, http_idle_timeout_s=5.0, http_header_timeout_s=1.0
    )
    with live_server(quick) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\n")
            start = time.monotonic()
            got, waited = b"", 0.0
            for i in range(20):  # 6 s of headers if nobody stops them
                time.sleep(0.3)
                try:
                    s.sendall(f"X-Slow-{i}: 1\r\n".encode())
                except OSError:  # closed: the 408 is in the receive buffer
                    pass
                s.settimeout(0.01)
                try:
                    got += s.recv(4096)
                except (TimeoutError, OSError):
                    pass
                if got:
                    waited = time.monotonic() - start
                    break
        assert got.startswith(b"HTTP/1.1 408 "), got
        assert 0.9 < waited < 1.6, waited
        # headers sent at once are not held to anything but the read timeout
        assert httpx.get(url + "/healthz").status_code == 200


def test_connections_per_address_are_capped(live_settings: Settings) -> None:
    capped = prepare(live_settings).replace(http_max_connections_per_address=3)
    with live_server(capped) as url:
        host, port = url.removeprefix("http://").split(":")
        held = [socket.create_connection((host, int(port)), timeout=10) for _ in range(3)]
        try:
            with socket.create_connection((host, int(port)), timeout=10) as extra:
                got = b""
                while chunk := extra.recv(4096):  # answered and closed as it opens
                    got += chunk
            assert got.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in got, got
            held[0].sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert held[0].recv(4096).startswith(b"HTTP/1.1 200 ")  # the 3 still work
        finally:
            for s in held:
                s.close()
        deadline = time.monotonic() + 5  # the server counts them closed as it sees them go
        while True:
            try:
                assert httpx.get(url + "/healthz").status_code == 200
                break
            except (httpx.TransportError, AssertionError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    # a trusted proxy carries every caller behind it: it is not capped
    proxied = capped.replace(trusted_proxies="127.0.0.1")
    with live_server(proxied) as url:
        host, port = url.removeprefix("http://").split(":")
        held = [socket.create_connection((host, int(port)), timeout=10) for _ in range(4)]
        try:
            held[3].sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert held[3].recv(4096).startswith(b"HTTP/1.1 200 ")
        finally:
            for s in held:
                s.close()


# -- 9: CSV rows are rejected one by one ------------------------------------------------------
def test_csv_bad_rows_are_rejected_and_the_rest_kept(lake: Lake, tmp_path: Path) -> None:
    rows = [b"appid,openid,ts"]
    rows += [f"{A},u{i},2024-06-10T10:00:00+08:00".encode() for i in range(3)]
    rows.insert(2, f"{A},extra,2024-06-10T10:00:00+08:00,surplus".encode())  # line 3
    rows.append(f"{A},caf\xe9,2024-06-10T10:00:00+08:00".encode("latin-1"))  # line 6
    rows.append(f"{A},u9,2024-06-10T10:00:00+08:00".encode())
    src = tmp_path / "rows.csv"
    src.write_bytes(b"\n".join(rows) + b"\n")
    report = ingest_file(lake, src)
    assert (report.accepted, report.rejected) == (4, 2)
    assert [(r.line, r.reason) for r in report.rejects] == [
        (3, "row has 4 fields; the header has 3"),
        (6, "not valid UTF-8"),
    ]


def test_csv_rows_after_a_broken_quote_are_kept(lake: Lake, tmp_path: Path) -> None:
    """A quote error rejects its row only (DuckDB drops the rest of the file unless it
    stores rejects); a row's reason counts all its fields (DuckDB's message says W+1); a
    blank line is skipped but counted."""
    ts = "2024-06-10T10:00:00+08:00"
    lines = ["appid,openid,ts", f"{A},u1,{ts}", f'{A},"u2"x,{ts}', "", f"{A},,{ts}"]
    lines += [f"{A},u4,{ts},,x,y", f"{A},u5,{ts},,", f'{A}, "u6" ,{ts}', f'{A},"u7,{ts}']
    lines += [f"{A},u8,{ts}"]  # inside the quote opened on line 8, never closed
    src = tmp_path / "quotes.csv"
    src.write_text("\n".join(lines) + "\n", "utf-8")
    report = ingest_file(lake, src)
    assert (report.accepted, report.rejected) == (3, 4)
    assert [(r.line, r.reason) for r in report.rejects] == [
        (3, "a quoted field is not closed"),
        (5, "openid is missing"),  # after a blank line, which counts
        (6, "row has 6 fields; the header has 3"),
        (9, "a quoted field is not closed"),
    ]


def test_a_csv_file_with_lone_carriage_returns_is_read(lake: Lake, tmp_path: Path) -> None:
    src = tmp_path / "mac.csv"  # old Mac line ends: the header reader used to crash on it
    src.write_bytes(f"appid,openid,ts\r{A},u1,2024-06-10\r{A},u2\r".encode())
    report = ingest_file(lake, src)
    assert (report.accepted, [(r.line, r.reason) for r in report.rejects]) == (
        1,
        [(3, "row has 2 fields; the header has 3")],
    )


def test_csv_invalid_utf8_is_a_record_error_in_ndjson_too(lake: Lake, tmp_path: Path) -> None:
    good = json.dumps(ev(1)).encode()
    src = tmp_path / "bytes.ndjson"
    src.write_bytes(good + b"\n" + good.replace(b"u1", b"u\xff") + b"\n" + good + b"\n")
    report = ingest_file(lake, src)
    assert (report.accepted, report.rejected) == (2, 1)
    assert [(r.line, r.reason) for r in report.rejects] == [(2, "not valid UTF-8")]


def test_an_over_long_ndjson_line_is_rejected_alone(
    lake: Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from userportrait.portrait import rules

    monkeypatch.setattr(rules, "MAX_LINE_BYTES", 1000)
    good = json.dumps(ev(1)).encode()
    src = tmp_path / "long.ndjson"
    src.write_bytes(good + b"\n" + good.replace(b"u1", b"u" * 1000) + b"\n" + good + b"\n")
    report = ingest_file(lake, src)
    assert (report.accepted, report.rejected) == (2, 1)
    assert [(r.line, r.reason) for r in report.rejects] == [(2, "line is longer than 1000 bytes")]


def test_ndjson_whose_first_record_is_an_array_is_read_line_by_line() -> None:
    good = json.dumps(ev(1)).encode()
    assert parse_records(b"[1, 2]\n" + good + b"\n") == [[1, 2], ev(1)]
    assert parse_records(b"[1, 2]") == [1, 2]  # one line: a JSON array
    with pytest.raises(ValueError, match="not a valid JSON array"):
        parse_records(b"[\n" + good + b",\n")


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(alphabet='a]}[{,"\\é', max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=10,
)  # fmt: skip


@given(st.lists(_JSON, min_size=2, max_size=30))
def test_array_elements_are_counted_as_orjson_reads_them(values: list[Any]) -> None:
    assert _array_length(orjson.dumps(values)) == len(values)


class _Item(BaseModel):
    name: str


@pytest.mark.anyio
async def test_a_route_with_a_body_model_is_limited_too() -> None:
    """FastAPI reads a pydantic body itself and wraps what that raised in a 400."""
    from fastapi import FastAPI

    from tests.server import app_client
    from userportrait.api import errors
    from userportrait.api.body import BodyLimit

    app = FastAPI()
    errors.install(app)
    app.add_middleware(BodyLimit, default=100, per_path={})

    @app.post("/items")
    async def items(item: _Item) -> dict[str, str]:
        return {"name": item.name}

    async with app_client(app) as c:
        assert (await c.post("/items", json={"name": "a"})).json() == {"name": "a"}
        res = await c.post("/items", json={"name": "a" * 200})
        assert res.status_code == 413 and res.json()["errcode"] == 45002
