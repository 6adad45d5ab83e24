"""Every route fuzzed on a real server (issue 16): zero 5xx, zero tracebacks, zero hangs.

* schemathesis walks the OpenAPI schema: every operation, half the cases with a valid
  access_token so they reach the portrait code; ``FUZZ_EXAMPLES`` per route by default,
  ``FUZZ_EXAMPLES_SLOW`` with ``--runslow`` (raw bodies: ``RAW_EXAMPLES``, ``RAW_EXAMPLES_SLOW``);
* hypothesis sends raw bodies to the WeChat routes (they read the body themselves, so the
  schema says little about them) and NDJSON / JSON-array / gzip bodies to live ingestion;
* unknown routes and methods answer in WeChat's error shape.

Every response must be HTTP < 500 within ``TIMEOUT_S``, in WeChat's success or error shape,
and the server must log no traceback. The counts per route are printed at the end
(``pytest -s tests/test_fuzz.py``).
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures import A
from tests.server import CLOUD, PATH, RID, ingest_headers, live_server, prepare
from userportrait.app import create_app
from userportrait.settings import Settings

FUZZ_EXAMPLES = 30
FUZZ_EXAMPLES_SLOW = 600
RAW_EXAMPLES = 120
RAW_EXAMPLES_SLOW = 1500
TIMEOUT_S = 10.0
COUNTS: Counter[str] = Counter()
FIVE_XX: Counter[str] = Counter()


class Tracebacks(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.ERROR:
            self.records.append(record)


class Server(NamedTuple):
    url: str
    token: str  # a read token of app A
    tracebacks: Tracebacks
    ingest: dict[str, str]  # the Authorization header with A's ingest key (writes)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("fuzz") / "data"
    # No limit on wrong secrets here: the fuzzer sends hundreds (tests/test_hardening.py).
    base = Settings(data_dir=data, duckdb_memory_limit_mb=512, live_flush_interval_ms=200)
    cfg = prepare(base).replace(secret_failures_per_app=0, secret_failures_per_client=0)
    handler = Tracebacks()
    loggers = [logging.getLogger(n) for n in ("userportrait", "uvicorn", "uvicorn.error")]
    for lg in loggers:
        lg.addHandler(handler)
    try:
        with live_server(cfg) as url:
            res = httpx.get(f"{url}/cgi-bin/token", params={
                "grant_type": "client_credential", "appid": A, "secret": "s3cret-s3cret"})  # fmt: skip
            ingest = ingest_headers(cfg, A)
            yield Server(url, res.json()["access_token"], handler, ingest)
    finally:
        for lg in loggers:
            lg.removeHandler(handler)
    lines = [f"  {route}: {n} ({FIVE_XX[route]})" for route, n in sorted(COUNTS.items())]
    sys.stderr.write("\nfuzz cases per route (5xx found):\n" + "\n".join(lines) + "\n")


def check(route: str, res: httpx.Response) -> None:
    """HTTP < 500; a JSON body in WeChat's success or error shape (CSV for format=csv)."""
    COUNTS[route] += 1
    if res.status_code >= 500:
        FIVE_XX[route] += 1
    assert res.status_code < 500, (route, res.status_code, res.text[:300])
    if res.headers.get("content-type", "").startswith("text/csv"):
        assert res.text.startswith("ref_date,audience,dimension,id,name,value\n")
        return
    body = res.json()
    assert isinstance(body, dict), body
    if "errcode" in body and body["errcode"] != 0:
        assert set(body) == {"errcode", "errmsg"}, body
        assert isinstance(body["errcode"], int) and re.search(f" rid: {RID}$", body["errmsg"])
    elif "errCode" in body and body["errCode"] != 0:
        assert set(body) == {"errCode", "errMsg"} and re.search(f" rid: {RID}$", body["errMsg"])
    else:
        shapes = [{"access_token", "expires_in"}, {"ref_date", "visit_uv_new", "visit_uv"},
                  {"refDate", "visitUvNew", "visitUv", "errMsg", "errCode"},
                  {"status", "version", "store_version"},
                  {"errcode", "errmsg", "accepted", "rejected"}]  # fmt: skip
        assert set(body) in shapes, body


def no_tracebacks(handler: Tracebacks) -> None:
    found = [f"{r.name}: {r.getMessage()}" for r in handler.records]
    handler.records.clear()
    assert found == []


# -- schemathesis over the OpenAPI schema ---------------------------------------------------
# create_app opens nothing, so the schema needs no data directory.
SCHEMA = schemathesis.openapi.from_dict(
    create_app(Settings(data_dir=Path("/nonexistent"))).openapi()
)
OPERATIONS = [op.ok() for op in SCHEMA.get_all_operations()]
#: Routes that take the ingest key (Authorization: Bearer), not an access_token (issue 24).
WRITE_ROUTES = frozenset({"/v1/events", "/v1/profiles"})


def run_schema(server: Server, label: str, examples: int) -> None:
    url, good_token, handler, ingest = server
    op = next(o for o in OPERATIONS if o.label == label)
    flip = Counter[str]()

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(op.as_strategy())
    def one(case: Any) -> None:
        flip[label] += 1
        if flip[label] % 2 and any(p.name == "access_token" for p in op.query):
            case.query = {**(case.query or {}), "access_token": good_token}
        elif flip[label] % 2 and op.path in WRITE_ROUTES:
            case.headers = {**(case.headers or {}), **ingest}
        kwargs = case.as_transport_kwargs(base_url=url)
        kwargs.pop("url", None)
        with httpx.Client(timeout=TIMEOUT_S) as client:
            res = client.request(
                case.method, url + case.formatted_path, params=kwargs.get("params"),
                headers=kwargs.get("headers"), content=_content(kwargs),
            )  # fmt: skip
        check(label, res)

    one()
    no_tracebacks(handler)


def _content(kwargs: dict[str, Any]) -> bytes | None:
    if kwargs.get("json") is not None:
        return json.dumps(kwargs["json"]).encode()
    data = kwargs.get("data") or kwargs.get("content")
    return data.encode() if isinstance(data, str) else data


LABELS = [op.label for op in OPERATIONS]


@pytest.mark.parametrize("label", LABELS)
def test_schema_routes(server: Server, label: str) -> None:
    run_schema(server, label, FUZZ_EXAMPLES)


@pytest.mark.slow
@pytest.mark.parametrize("label", LABELS)
def test_schema_routes_long(server: Server, label: str) -> None:
    run_schema(server, label, FUZZ_EXAMPLES_SLOW)


# -- hypothesis: raw bodies of the WeChat routes --------------------------------------------
KEYS = ["begin_date", "end_date", "beginDate", "endDate", "grant_type", "appid", "secret",
        "force_refresh"]  # fmt: skip
DATES = st.sampled_from(["20240610", "2024-06-12", "20240606", "20241301", "00000000", "2024-6-1",
                         " 20240610 ", "２０２４０６１０", "20240610\n"])  # fmt: skip
TEXT = st.text(st.characters(exclude_categories=()), max_size=12)  # lone surrogates too
LEAVES = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | TEXT | DATES
          | st.sampled_from([A, "client_credential", "s3cret-s3cret"]))  # fmt: skip


def _nest(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(KEYS) | TEXT, children, max_size=6
    )


JSON = st.recursive(LEAVES, _nest, max_leaves=12)
OBJECTS = st.fixed_dictionaries(
    {}, optional={k: (DATES if "ate" in k else LEAVES) for k in KEYS}
) | st.dictionaries(st.sampled_from(KEYS) | TEXT, JSON, max_size=6)  # fmt: skip
RAW = (
    OBJECTS.map(lambda o: json.dumps(o).encode())
    | JSON.map(lambda o: json.dumps(o).encode())
    | st.binary(max_size=200)
    | st.sampled_from([b"", b" ", b"{", b"null", b"[]", b'{"begin_date": "20240610"', b"\xff\xfe",
                       b'{"begin_date": "2024061\\u0000"}', b"1e400", b"NaN"])
)  # fmt: skip
CONTENT_TYPES = st.sampled_from([None, "application/json", "text/plain", "application/x-www-form-urlencoded",
                                 "application/json; charset=gbk", "multipart/form-data"])  # fmt: skip


def raw_wechat(examples: int) -> Any:
    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(
        route=st.sampled_from([PATH, CLOUD, "/cgi-bin/stable_token"]),
        body=RAW,
        content_type=CONTENT_TYPES,
        with_token=st.booleans(),
    )
    def run(
        server: Server, route: str, body: bytes, content_type: str | None,
        with_token: bool,
    ) -> None:  # fmt: skip
        url, good_token, _, _ = server
        headers = {"Content-Type": content_type} if content_type else {}
        params = {"access_token": good_token} if with_token else {}
        res = httpx.post(url + route, content=body, headers=headers, params=params,
                         timeout=TIMEOUT_S)  # fmt: skip
        check(f"POST {route} (raw body)", res)

    return run


def test_wechat_raw_bodies(server: Server) -> None:
    raw_wechat(RAW_EXAMPLES)(server)
    no_tracebacks(server[2])


@pytest.mark.slow
def test_wechat_raw_bodies_long(server: Server) -> None:
    raw_wechat(RAW_EXAMPLES_SLOW)(server)
    no_tracebacks(server[2])


# -- hypothesis: live-ingest bodies ---------------------------------------------------------
FIELDS = ["appid", "openid", "ts", "event_id", "province", "city", "gender", "platform", "device",
          "age", "ip", "model", "brand", "system", "user_agent"]  # fmt: skip
TS = st.sampled_from(["2024-06-10T10:00:00+08:00", "2024-06-10 10:00:00", 1718000000,
                      1718000000000, "yesterday", -1, 2**63, "2024-02-30T00:00:00Z"])  # fmt: skip
EVENT = st.fixed_dictionaries(
    {}, optional={f: (TS if f == "ts" else st.just(A) if f == "appid" else LEAVES) for f in FIELDS}
) | st.dictionaries(st.sampled_from(FIELDS) | TEXT, JSON, max_size=5)  # fmt: skip


@st.composite
def ingest_bodies(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    events = draw(st.lists(EVENT | JSON, max_size=6))
    form = draw(st.sampled_from(["ndjson", "array", "junk"]))
    if form == "ndjson":
        sep = draw(st.sampled_from(["\n", "\r\n", "\n\n"]))
        text = sep.join(json.dumps(e, ensure_ascii=draw(st.booleans())) for e in events)
        raw = text.encode("utf-8", "surrogatepass")  # a raw lone surrogate: invalid UTF-8
    elif form == "array":
        raw = json.dumps(events).encode()
    else:
        raw = draw(st.binary(max_size=200))
    headers: dict[str, str] = {}
    encoding = draw(st.sampled_from([None, "gzip", "identity", "br", "GZIP"]))
    if encoding:
        headers["Content-Encoding"] = encoding
        if encoding.lower() == "gzip" and draw(st.booleans()):
            cut = draw(st.integers(0, len(raw)))  # one member or two, as gzip tools write
            raw = gzip.compress(raw) if draw(st.booleans()) else (
                gzip.compress(raw[:cut]) + gzip.compress(raw[cut:]))  # fmt: skip
    return raw, headers


def raw_events(examples: int) -> Any:
    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(body=ingest_bodies(), with_key=st.booleans())
    def run(server: Server, body: tuple[bytes, dict[str, str]], with_key: bool) -> None:
        headers = {**body[1], **server.ingest} if with_key else body[1]
        res = httpx.post(f"{server.url}/v1/events", content=body[0], headers=headers,
                         timeout=TIMEOUT_S)  # fmt: skip
        check("POST /v1/events (raw body)", res)

    return run


def test_ingest_raw_bodies(server: Server) -> None:
    raw_events(RAW_EXAMPLES)(server)
    no_tracebacks(server[2])


@pytest.mark.slow
def test_ingest_raw_bodies_long(server: Server) -> None:
    raw_events(RAW_EXAMPLES_SLOW)(server)
    no_tracebacks(server[2])


# -- unknown routes -------------------------------------------------------------------------
SEGMENT = st.text(st.characters(codec="ascii", categories=["L", "N"]) | st.sampled_from("-_."),
                  min_size=1, max_size=10)  # fmt: skip


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(
    path=st.lists(SEGMENT, min_size=1, max_size=4).map(lambda p: "/" + "/".join(p)),
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
)
def _unknown(server: Server, path: str, method: str) -> None:
    res = httpx.request(method, server[0] + path, timeout=TIMEOUT_S)
    check("unknown routes", res)
    if res.status_code == 404:
        assert res.json()["errcode"] == -1 and "no such API" in res.json()["errmsg"]


def test_unknown_routes_answer_in_wechat_shape(server: Server) -> None:
    _unknown(server)
    no_tracebacks(server[2])


# Bodies that answered -1 with a traceback before issue 10 fixed the shared parsing.
ISSUE_10 = [
    ("/cgi-bin/stable_token", b'{"grant_type": "client_credential", "appid": "' + A.encode()
     + b'", "secret": "\\ud800-guess-guess"}'),
    (PATH, b"[" * 100_000 + b"]" * 100_000),
    (PATH, b'{"begin_date": ' + b"9" * 5000 + b"}"),
]  # fmt: skip


@pytest.mark.parametrize(("route", "body"), ISSUE_10, ids=["surrogate", "nesting", "digits"])
def test_issue_10_bodies(server: Server, route: str, body: bytes) -> None:
    url, good_token, handler, _ = server
    res = httpx.post(url + route, content=body, params={"access_token": good_token},
                     timeout=TIMEOUT_S)  # fmt: skip
    try:
        assert res.json()["errcode"] != -1, res.text
        no_tracebacks(handler)
    finally:
        handler.records.clear()
