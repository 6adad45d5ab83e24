"""Every route fuzzed on a real server (issue 16): zero 5xx, zero tracebacks, zero hangs.

* schemathesis walks the OpenAPI schema: every operation, half the cases with a valid
  access_token so they reach the portrait code; ``FUZZ_EXAMPLES`` per route by default,
  ``FUZZ_EXAMPLES_SLOW`` with ``--runslow`` (raw bodies: ``RAW_EXAMPLES``, ``RAW_EXAMPLES_SLOW``);
* hypothesis sends raw bodies to the WeChat routes (they read the body themselves, so the
  schema says little about them) and NDJSON / JSON-array / gzip bodies to live ingestion;
* hypothesis sends raw bodies, cookies and query strings to the dashboard's routes (left out
  of the schema) and the third-party platform's (half the cases with a valid
  component_access_token), with the right secrets, admin key and codes among the values;
* unknown routes and methods answer in WeChat's error shape;
* the last test checks that every route of the app (``doors.route_doors``, the schema's and
  the others) got fuzz cases, but for the static files listed in ``NOT_FUZZED``.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures import A
from tests.server import CLOUD, PATH, RID, SECRET, ingest_headers, live_server, prepare
from userportrait.api.doors import route_doors
from userportrait.app import create_app
from userportrait.auth.component import ComponentStore
from userportrait.dashboard.sessions import COOKIE, SessionStore, write_admin_key
from userportrait.settings import Settings

# One server and one COUNTS: under xdist, the whole file runs on one worker.
pytestmark = pytest.mark.xdist_group("fuzz")

FUZZ_EXAMPLES = 30
FUZZ_EXAMPLES_SLOW = 600
RAW_EXAMPLES = 120
RAW_EXAMPLES_SLOW = 1500
TIMEOUT_S = 10.0
COUNTS: Counter[str] = Counter()
FIVE_XX: Counter[str] = Counter()
ADMIN_KEY = "fuzz-admin-key-0001"
COMP = "wx00000000000000c1"
COMP_SECRET = "comp-s3cret-s3cret"


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
def fuzz_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "data"


@pytest.fixture(scope="module")
def server(fuzz_data: Path) -> Iterator[Server]:
    # No limit on wrong secrets here: the fuzzer sends hundreds (tests/test_hardening.py).
    base = Settings(data_dir=fuzz_data, duckdb_memory_limit_mb=512, live_flush_interval_ms=200)
    cfg = prepare(base).replace(secret_failures_per_app=0, secret_failures_per_client=0)
    write_admin_key(fuzz_data, ADMIN_KEY)
    ComponentStore(fuzz_data / "component.sqlite").add(COMP, COMP_SECRET)
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
        header = res.text.split("\n", 1)[0]
        assert re.fullmatch(
            r"ref_date,audience,dimension,id,name,value(,previous)?"
            r"|audience,(\w+)_id,\2_name,(\w+)_id,\3_name,value(,previous)?",
            header,
        ), header
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
                  # the native portrait's compare, by, and both (issue 27)
                  {"ref_date", "visit_uv_new", "visit_uv", "previous_ref_date", "totals"},
                  {"ref_date", "by", "visit_uv_new", "visit_uv"},
                  {"ref_date", "by", "visit_uv_new", "visit_uv", "previous_ref_date", "totals"},
                  {"refDate", "visitUvNew", "visitUv", "errMsg", "errCode"},
                  {"status", "version", "store_version"},
                  {"errcode", "errmsg", "accepted", "rejected"},
                  {"errcode", "errmsg", "users", "events"},  # POST /v1/forget
                  # the dashboard: sign-in and /me, sign-out, trend
                  {"errcode", "errmsg", "admin", "apps", "expires_at"}, {"errcode", "errmsg"},
                  {"errcode", "errmsg", "days"},
                  # the third-party platform's five routes
                  {"component_access_token", "expires_in"}, {"pre_auth_code", "expires_in"},
                  {"authorization_info"},
                  {"authorizer_access_token", "expires_in", "authorizer_refresh_token"},
                  {"authorizer_info", "authorization_info"}]  # fmt: skip
        assert set(body) in shapes, body
        if "errcode" in body:
            assert body["errmsg"] == "ok", body


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
WRITE_ROUTES = frozenset({"/v1/events", "/v1/profiles", "/v1/forget"})


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


# -- hypothesis: the native portrait's compare, filter and by (issue 27) ---------------------
PARAM_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)  # URL-encodable
FILTERS = st.sampled_from(["province=44", "city=4401", "genders=1", "ages=0", "platforms=2",
                           "devices=iPhone 13", "devices=未知", "province=99", "province=1",
                           "genders=99", "ages=7", "city=4499", "devices=", "province=", "=1",
                           "genders", "bogus=1", "province=44=1", "province=-1",
                           "province=00044", "province=１１", "devices=" + "x" * 300]) | PARAM_TEXT  # fmt: skip
BYS = st.sampled_from(["genders,ages", "province,city", "devices,platforms", "ages,ages",
                       "genders", "genders,ages,city", ",", "city,", "bogus,ages"]) | PARAM_TEXT  # fmt: skip


def native_params(examples: int) -> Any:
    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(
        filters=st.lists(FILTERS, max_size=3),
        by=st.none() | BYS,
        compare=st.none() | st.sampled_from(["previous", "", "next", "PREVIOUS"]),
        fmt=st.sampled_from(["json", "csv"]),
        window=st.sampled_from(
            [
                ("20240610", "20240612"),
                ("20240612", "20240612"),
                ("20240101", "20241231"),
                ("20240612", "20240610"),
            ]
        ),  # fmt: skip
    )
    def run(
        server: Server, filters: list[str], by: str | None, compare: str | None, fmt: str,
        window: tuple[str, str],
    ) -> None:  # fmt: skip
        url, good_token, _, _ = server
        params: list[tuple[str, str]] = [("begin", window[0]), ("end", window[1]),
                                         ("format", fmt), ("access_token", good_token)]  # fmt: skip
        params += [("filter", f) for f in filters]
        if by is not None:
            params.append(("by", by))
        if compare is not None:
            params.append(("compare", compare))
        res = httpx.get(f"{url}/v1/apps/{A}/portrait", params=params, timeout=TIMEOUT_S)
        check("GET /v1/apps/{appid}/portrait (compare, filter, by)", res)

    return run


def test_native_portrait_params(server: Server) -> None:
    native_params(RAW_EXAMPLES)(server)
    no_tracebacks(server.tracebacks)


@pytest.mark.slow
def test_native_portrait_params_long(server: Server) -> None:
    native_params(RAW_EXAMPLES_SLOW)(server)
    no_tracebacks(server.tracebacks)


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


# -- hypothesis: forget bodies ---------------------------------------------------------------
FORGET_BODIES = (
    st.fixed_dictionaries({"openids": st.lists(TEXT | LEAVES, max_size=5)}).map(
        lambda o: json.dumps(o).encode()
    )
    | OBJECTS.map(lambda o: json.dumps(o).encode())
    | JSON.map(lambda o: json.dumps(o).encode())
    | st.binary(max_size=200)
)


def raw_forgets(examples: int) -> Any:
    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(body=FORGET_BODIES, with_key=st.booleans())
    def run(server: Server, body: bytes, with_key: bool) -> None:
        res = httpx.post(f"{server.url}/v1/forget", content=body,
                         headers=server.ingest if with_key else {}, timeout=TIMEOUT_S)  # fmt: skip
        check("POST /v1/forget (raw body)", res)

    return run


def test_forget_raw_bodies(server: Server) -> None:
    raw_forgets(RAW_EXAMPLES)(server)
    no_tracebacks(server[2])


@pytest.mark.slow
def test_forget_raw_bodies_long(server: Server) -> None:
    raw_forgets(RAW_EXAMPLES_SLOW)(server)
    no_tracebacks(server[2])


# -- hypothesis: the dashboard and the third-party platform ---------------------------------
@dataclass(frozen=True)
class Known:
    """Right values, so that some cases get past each check: tokens, codes, keys."""

    component_token: str
    ticket: str
    auth_codes: tuple[str, ...]
    refresh_token: str
    link_codes: tuple[str, ...]
    app_session: str
    admin_session: str


def _session(url: str, body: dict[str, str]) -> str:
    res = httpx.post(url + "/dashboard/signin", json=body, timeout=TIMEOUT_S)
    assert res.json()["errcode"] == 0, res.text
    return res.cookies[COOKIE]


@pytest.fixture(scope="module")
def known(server: tuple[str, str, Tracebacks], fuzz_data: Path) -> Known:
    url = server[0]
    store = ComponentStore(fuzz_data / "component.sqlite")
    ticket = store.ticket(COMP)
    res = httpx.post(f"{url}/cgi-bin/component/api_component_token", json={
        "component_appid": COMP, "component_appsecret": COMP_SECRET,
        "component_verify_ticket": ticket}, timeout=TIMEOUT_S)  # fmt: skip
    token = res.json()["component_access_token"]
    res = httpx.post(f"{url}/cgi-bin/component/api_query_auth",
                     params={"component_access_token": token}, timeout=TIMEOUT_S,
                     json={"component_appid": COMP,
                           "authorization_code": store.authorize(COMP, A, (1, 18))})  # fmt: skip
    refresh = res.json()["authorization_info"]["authorizer_refresh_token"]
    links = SessionStore(fuzz_data, link_ttl_s=3600)
    return Known(
        token, ticket, tuple(store.authorize(COMP, A, (18,)) for _ in range(3)), refresh,
        tuple(links.new_link_code(A) for _ in range(3)),
        _session(url, {"appid": A, "secret": SECRET}), _session(url, {"admin_key": ADMIN_KEY}),
    )  # fmt: skip


def _dumps(draw: st.DrawFn, value: Any) -> bytes:
    text = json.dumps(value, ensure_ascii=draw(st.booleans()))
    return text.encode("utf-8", "surrogatepass")  # a raw lone surrogate: invalid UTF-8


#: Bodies a JSON parser trips on: 10**5000 written out, deep nesting, lone surrogate escapes,
#: invalid UTF-8, a BOM, duplicate keys, NaN, trailing bytes.
EDGES = [
    b'{"appid": 1' + b"0" * 5000 + b', "secret": "s3cret-s3cret"}',
    b'{"admin_key": -' + b"9" * 5000 + b"}",
    b'{"component_appid": 1' + b"0" * 5000 + b"}",
    b'{"code": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    b'{"appid": {"a": ' * 5000 + b"1" + b"}}" * 5000,
    b'{"appid": "' + A.encode() + b'", "secret": "\\ud800"}',
    b'{"admin_key": "\\udfff\\ud800", "code": "\\u0000"}',
    b'{"component_appid": "\\ud83d", "component_appsecret": "x"}',
    b'{"code": "\xff\xfe"}', b'{"appid": "wx\xc3"}', b"\xef\xbb\xbf{}",
    b'{"appid": "a", "appid": "' + A.encode() + b'"}', b'{"secret": NaN}', b'{"code": 1e400}',
    b'{"code": "x"} trailing', b"{}", b"", b"[]", b'"string"', b"null",
]  # fmt: skip
SIGNIN_KEYS = ["appid", "secret", "admin_key", "code"]
COMPONENT_KEYS = ["component_appid", "component_appsecret", "component_verify_ticket",
                  "authorization_code", "authorizer_appid", "authorizer_refresh_token"]  # fmt: skip


@st.composite
def bodies(
    draw: st.DrawFn, keys: list[str], right: list[dict[str, str]]
) -> tuple[bytes, dict[str, str]]:
    """A body and its headers: a right body (``right``) as is or with one field changed,
    JSON objects of ``keys`` (strings, the right ones among them, or values of any type),
    edge cases or junk; sent with any Content-Type, sometimes gzipped."""
    values = sorted({v for body in right for v in body.values()})
    strings = st.sampled_from(values) | TEXT
    form = draw(st.sampled_from(["right", "fields", "any", "edge", "junk"]))
    if form == "right":
        obj: dict[str, Any] = dict(draw(st.sampled_from(right)))
        change = draw(st.sampled_from(["none", "none", "value", "drop", "add"]))
        key = draw(st.sampled_from(sorted(obj)))
        if change == "value":
            obj[key] = draw(strings | LEAVES)
        elif change == "drop":
            del obj[key]
        elif change == "add":
            obj[draw(st.sampled_from(keys) | TEXT)] = draw(strings | JSON)
        raw = _dumps(draw, obj)
    elif form == "fields":
        leaf = strings if draw(st.booleans()) else strings | LEAVES
        raw = _dumps(draw, draw(st.fixed_dictionaries({}, optional=dict.fromkeys(keys, leaf))))
    elif form == "any":
        raw = _dumps(draw, draw(st.dictionaries(st.sampled_from(keys) | TEXT, JSON | strings,
                                                max_size=6)))  # fmt: skip
    elif form == "edge":
        raw = draw(st.sampled_from(EDGES))
    else:
        raw = draw(st.binary(max_size=200))
    headers = {}
    kind = draw(st.sampled_from([None, "application/json", "application/json", "text/plain",
                                 "Application/JSON; charset=utf-8", "multipart/form-data",
                                 "application/x-www-form-urlencoded"]))  # fmt: skip
    if kind:
        headers["Content-Type"] = kind
    encoding = draw(st.sampled_from([None, None, None, None, "gzip", "GZIP", "br"]))
    if encoding:
        headers["Content-Encoding"] = encoding
        if encoding.lower() == "gzip" and draw(st.booleans()):
            raw = gzip.compress(raw)
            raw = raw if draw(st.booleans()) else raw[: draw(st.integers(0, len(raw)))]
    return raw, headers


#: Query values and cookies httpx can send (no lone surrogates: it encodes them as UTF-8).
PRINTABLE = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
COOKIES = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)


def raw_signin(examples: int) -> Any:
    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(data=st.data(), origin=st.sampled_from([None, "same", "http://evil.example", "null"]),
           as_json=st.integers(0, 3))  # fmt: skip
    def run(server: tuple[str, str, Tracebacks], known: Known, data: st.DataObject,
            origin: str | None, as_json: int) -> None:  # fmt: skip
        url = server[0]
        right = [{"appid": A, "secret": SECRET}, {"admin_key": ADMIN_KEY},
                 *({"code": code} for code in known.link_codes)]  # fmt: skip
        body, headers = data.draw(bodies(SIGNIN_KEYS, right))
        if as_json:  # three cases in four past the same-origin step, on to the secret checks
            headers["Content-Type"] = "application/json"
            origin = origin if origin in (None, "same") else None
        if origin:
            headers["Origin"] = url if origin == "same" else origin
        res = httpx.post(url + "/dashboard/signin", content=body, headers=headers,
                         timeout=TIMEOUT_S)  # fmt: skip
        check("POST /dashboard/signin (raw body)", res)

    return run


def test_signin_raw_bodies(server: tuple[str, str, Tracebacks], known: Known) -> None:
    raw_signin(RAW_EXAMPLES)(server, known)
    no_tracebacks(server[2])


@pytest.mark.slow
def test_signin_raw_bodies_long(server: tuple[str, str, Tracebacks], known: Known) -> None:
    raw_signin(RAW_EXAMPLES_SLOW)(server, known)
    no_tracebacks(server[2])


def raw_sessions(examples: int) -> Any:
    """Sign-out, /me and the trend with any cookie (a live session a third of the time), query
    string and body."""

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(
        route=st.sampled_from(["POST /dashboard/signout", "GET /dashboard/me",
                               "GET /dashboard/trend"]),  # fmt: skip
        cookie=st.sampled_from(["app", "admin", None]) | COOKIES,
        params=st.fixed_dictionaries({}, optional={
            "appid": st.sampled_from([A, "wxb000000000000002", ""]) | PRINTABLE,
            "begin": DATES | PRINTABLE, "end": DATES | PRINTABLE}) | st.dictionaries(
            st.sampled_from(["appid", "begin", "end"]) | PRINTABLE, PRINTABLE, max_size=5)
            | st.just({"appid": A, "begin": "20240609", "end": "20240612"}),
        data=st.data(),
    )  # fmt: skip
    def run(server: tuple[str, str, Tracebacks], known: Known, route: str, cookie: str | None,
            params: dict[str, str], data: st.DataObject) -> None:  # fmt: skip
        url = server[0]
        method, path = route.split()
        body, headers = data.draw(bodies(SIGNIN_KEYS, [{"appid": A, "secret": SECRET}]))
        if cookie == "app" or cookie == "admin":
            if path == "/dashboard/signout":  # its own session: the others stay live
                sid = _session(url, {"appid": A, "secret": SECRET})
            else:
                sid = known.app_session if cookie == "app" else known.admin_session
            headers["Cookie"] = f"{COOKIE}={sid}"
        elif cookie is not None:
            raw = f"{COOKIE}={cookie}" if data.draw(st.booleans()) else cookie
            if raw.strip():  # h11 sends no blank header value, nor one padded with spaces
                headers["Cookie"] = raw.strip()
        res = httpx.request(method, url + path, params=params, headers=headers,
                            content=body if method == "POST" else None, timeout=TIMEOUT_S)  # fmt: skip
        check(f"{route} (raw)", res)

    return run


def test_dashboard_sessions_raw(server: tuple[str, str, Tracebacks], known: Known) -> None:
    raw_sessions(RAW_EXAMPLES)(server, known)
    no_tracebacks(server[2])


@pytest.mark.slow
def test_dashboard_sessions_raw_long(server: tuple[str, str, Tracebacks], known: Known) -> None:
    raw_sessions(RAW_EXAMPLES_SLOW)(server, known)
    no_tracebacks(server[2])


COMPONENT_ROUTES = ["api_component_token", "api_create_preauthcode", "api_query_auth",
                    "api_authorizer_token", "api_get_authorizer_info"]  # fmt: skip


def raw_component(examples: int) -> Any:
    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(
        route=st.sampled_from(COMPONENT_ROUTES),
        with_token=st.booleans(),
        params=st.dictionaries(PRINTABLE, PRINTABLE, max_size=3),
        data=st.data(),
    )
    def run(server: tuple[str, str, Tracebacks], known: Known, route: str, with_token: bool,
            params: dict[str, str], data: st.DataObject) -> None:  # fmt: skip
        url = server[0]
        c = {"component_appid": COMP}
        right = {  # the route's right body
            "api_component_token": [{**c, "component_appsecret": COMP_SECRET,
                                     "component_verify_ticket": known.ticket}],
            "api_create_preauthcode": [c],
            "api_query_auth": [{**c, "authorization_code": code} for code in known.auth_codes],
            "api_authorizer_token": [{**c, "authorizer_appid": A,
                                      "authorizer_refresh_token": known.refresh_token}],
            "api_get_authorizer_info": [{**c, "authorizer_appid": A}],
        }[route]  # fmt: skip
        body, headers = data.draw(bodies(COMPONENT_KEYS, right))
        if with_token:
            params = {**params, "component_access_token": known.component_token}
        res = httpx.post(f"{url}/cgi-bin/component/{route}", content=body, headers=headers,
                         params=params, timeout=TIMEOUT_S)  # fmt: skip
        check(f"POST /cgi-bin/component/{route} (raw body)", res)

    return run


def test_component_raw_bodies(server: tuple[str, str, Tracebacks], known: Known) -> None:
    raw_component(RAW_EXAMPLES * 2)(server, known)
    no_tracebacks(server[2])


@pytest.mark.slow
def test_component_raw_bodies_long(server: tuple[str, str, Tracebacks], known: Known) -> None:
    raw_component(RAW_EXAMPLES_SLOW * 2)(server, known)
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


#: What an HTTP client lets into a header value.
PRINTABLE = st.characters(min_codepoint=0x20, max_codepoint=0x7E)


@settings(max_examples=RAW_EXAMPLES // 4, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))  # fmt: skip
@given(
    auth=st.one_of(
        st.none(),
        st.just(f"Bearer {ADMIN_KEY}"),
        st.text(PRINTABLE, max_size=200).map(lambda t: "Bearer " + t),
        st.text(PRINTABLE, max_size=200),
    ),
    query=st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=3),
)
def _metrics(server: Server, auth: str | None, query: dict[str, str]) -> None:
    auth = auth.strip() if auth else None  # a header value has no edge blanks
    headers = {"authorization": auth} if auth else {}
    res = httpx.get(server[0] + "/metrics", headers=headers, params=query, timeout=TIMEOUT_S)
    if res.headers.get("content-type", "").startswith("text/plain"):
        COUNTS["GET /metrics"] += 1
        assert res.status_code == 200 and "userportrait_requests_total" in res.text
    else:
        check("GET /metrics", res)


def test_metrics_route(server: Server) -> None:
    _metrics(server)
    no_tracebacks(server[2])


# -- every route fuzzed ---------------------------------------------------------------------
#: Static files with no input of their own: the page, its assets, Swagger UI, the schema.
NOT_FUZZED = {("GET", "/"), ("GET", "/assets/{path}"), ("GET", "/docs"), ("GET", "/openapi.json")}


def test_every_route_is_fuzzed() -> None:
    """Every (method, path) of the app, the schema's and the others, got fuzz cases above.

    Counted by the tests before this one (pytest keeps the file's order): run the whole file."""
    routes = set(route_doors(create_app(Settings(data_dir=Path("/nonexistent")))))
    assert NOT_FUZZED <= routes
    fuzzed = {tuple(label.split()[:2]) for label, n in COUNTS.items() if n}
    assert sorted(routes - NOT_FUZZED - fuzzed) == []
