"""The one admission path: every route declares its door, and its steps run only here.

A route's endpoint is decorated with ``@door(Step...)``; ``install`` refuses to build an app
with a route that declares none, and ``Enforce`` (ASGI middleware) fails closed: a route
that answers without an error but did not pass every step it declared gets -1 instead of
its answer. The steps (docs/api.md "Doors"):

=========== ====================================================================================
SECRET      an app secret, the dashboard admin key, a sign-in code or a platform secret, checked
            under ``auth/limits.SecretGuard`` (failures per subject and per address; 45011)
READ        a read credential: an access or authorizer token, or a dashboard session whose grant
            (the app's secret, the admin key) still holds
WRITE       an app's ingest key (write-only; never a read token)
PLATFORM    a ``component_access_token`` that matches the body's ``component_appid``
ALLOW_LIST  the app's IP allow-list, on the caller's address (X-Forwarded-For is believed only
            from ``USERPORTRAIT_TRUSTED_PROXIES``)
SECURITY    API-security mode: a sealed request opened and its answer sealed; an app in that
            mode gets no plaintext portrait anywhere else (48001)
QUOTA       the datacube's daily and per-minute call quota
THRESHOLD   the app's small-count threshold, put into the query
BODY        the body read with its limit and gzip, and parsed strictly (orjson)
SAME_ORIGIN a cookie-setting POST: a JSON Content-Type, and an Origin, if sent, of this host
=========== ====================================================================================
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyQuery, HTTPBearer
from starlette.routing import BaseRoute, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from userportrait.api.body import read_body
from userportrait.api.errors import ERROR_ANSWERED, WeChatJSON, error_body, rid_of
from userportrait.auth import allowlist
from userportrait.auth.security import APPID_HEADER, SIGNATURE_HEADER, AppKeys, open_request
from userportrait.dashboard.sessions import COOKIE, Session
from userportrait.errors import (
    AuthError,
    InvalidCredential,
    NoSymmetricKey,
    ServiceError,
    Unauthorized,
)
from userportrait.json_body import json_object
from userportrait.portrait.query import PortraitQuery
from userportrait.portrait.request import make_query

log = logging.getLogger("userportrait.api")
T = TypeVar("T")
E = TypeVar("E", bound=Callable[..., Any])


class Step(enum.StrEnum):
    SECRET = "secret"
    READ = "read"
    WRITE = "write"
    PLATFORM = "platform"
    ALLOW_LIST = "allow-list"
    SECURITY = "security"
    QUOTA = "quota"
    THRESHOLD = "threshold"
    BODY = "body"
    SAME_ORIGIN = "same-origin"


#: The credentials as OpenAPI security schemes, so that /docs has an Authorize button whose
#: values "Try it out" sends. They only describe: the steps below read the credentials.
ACCESS_TOKEN: Final = APIKeyQuery(
    name="access_token", auto_error=False, scheme_name="access_token",
    description="From /cgi-bin/token or /cgi-bin/stable_token (or an authorizer_access_token).",
)  # fmt: skip
COMPONENT_TOKEN: Final = APIKeyQuery(
    name="component_access_token", auto_error=False, scheme_name="component_access_token",
    description="From /cgi-bin/component/api_component_token.",
)  # fmt: skip
INGEST_KEY: Final = HTTPBearer(
    auto_error=False, scheme_name="ingest_key",
    description="The app's write-only ingest key (userportrait apps ingest-key).",
)  # fmt: skip

#: What a route that reads an app's portrait passes through, whichever credential it takes.
READS_APP: Final = (Step.READ, Step.ALLOW_LIST, Step.SECURITY, Step.THRESHOLD)
_DOOR: Final = "__door__"
_PASSED: Final = "passed_steps"


def door(*steps: Step) -> Callable[[E], E]:
    """Declare the steps a route's requests pass through (``()``: a public route)."""

    def mark(endpoint: E) -> E:
        setattr(endpoint, _DOOR, frozenset(steps))
        return endpoint

    return mark


def door_of(endpoint: object) -> frozenset[Step] | None:
    steps: frozenset[Step] | None = getattr(endpoint, _DOOR, None)
    return steps


def passed(request: Request, step: Step) -> None:
    request.scope.setdefault("state", {}).setdefault(_PASSED, set()).add(step)


def _flat(routes: Iterable[BaseRoute], prefix: str = "") -> Iterator[tuple[str, BaseRoute]]:
    """Every route with its full path (FastAPI >= 0.16x nests included routers)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            context = getattr(route, "include_context", None)
            yield from _flat(inner.routes, prefix + str(getattr(context, "prefix", "") or ""))
        else:
            yield prefix + str(getattr(route, "path", "")), route


def route_doors(app: FastAPI) -> dict[tuple[str, str], frozenset[Step]]:
    """``(method, path) -> steps`` of every route (static mounts are public)."""
    out: dict[tuple[str, str], frozenset[Step]] = {}
    for path, route in _flat(app.router.routes):
        if isinstance(route, Mount):
            out[("GET", path + "/{path}")] = frozenset()
            continue
        steps = door_of(getattr(route, "endpoint", None))
        if steps is None:
            raise RuntimeError(f"route {path} declares no door (api/doors.py)")
        for method in sorted(getattr(route, "methods", None) or {"GET"}):
            if method != "HEAD":
                out[(method, path)] = steps
    return out


def install(app: FastAPI) -> None:
    """Check every route's door (call once the routes are added); enforce them per request."""
    for _, route in _flat(app.router.routes):  # FastAPI's own schema route is public
        endpoint = getattr(route, "endpoint", None)
        if getattr(route, "path", None) == app.openapi_url and endpoint is not None:
            door()(endpoint)
    route_doors(app)
    app.add_middleware(Enforce)


class Enforce:
    """Fail closed: a success answered without every declared step becomes -1."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        replaced = False

        async def checked(message: Message) -> None:
            nonlocal replaced
            if replaced:
                return
            if message["type"] == "http.response.start":
                missing = _missing(scope)
                if missing:
                    replaced = True
                    await _refuse(scope, receive, send, missing)
                    return
            await send(message)

        await self.app(scope, receive, checked)


def _missing(scope: Scope) -> set[Step]:
    state = scope.get("state", {})
    steps = door_of(scope.get("endpoint"))
    if not steps or ERROR_ANSWERED in state:
        return set()
    done: set[Step] = state.get(_PASSED, set())
    return set(steps) - done


async def _refuse(scope: Scope, receive: Receive, send: Send, missing: set[Step]) -> None:
    request = Request(scope)
    rid = rid_of(request)
    log.error(
        "rid=%s %s answered without passing %s", rid, scope["path"], sorted(missing),
        extra={"rid": rid},
    )  # fmt: skip
    body = error_body(ServiceError("admission incomplete"), rid, scope["path"])
    await WeChatJSON(body)(scope, receive, send)


# -- the steps ---------------------------------------------------------------------------------
def client_address(request: Request) -> str:
    """The TCP peer, or X-Forwarded-For read from the right when the peer is trusted."""
    peer = request.client.host if request.client else None
    return allowlist.client_address(
        peer, request.headers.get("x-forwarded-for"), request.app.state.trusted_proxies
    )


async def secret(
    request: Request, subject: str | None, check: Callable[[], T], *, cheap: bool = False,
    known: bool = False,
) -> T:  # fmt: skip
    """``check()`` (blocking, raises on a wrong secret) under the brute-force limits.

    ``subject`` names what is guessed at (``app:wx…``, ``admin``, ``component:wx…``);
    ``cheap`` when the check skips scrypt (a digest compare); ``known`` when the secret is
    the one last verified right (no scrypt and no guess: ``SecretGuard.check``).
    """
    passed(request, Step.SECRET)

    async def run() -> T:
        return await run_in_threadpool(check)

    guard = request.app.state.guard
    result: T = await guard.check(subject, client_address(request), run, cheap, known)
    return result


async def allow_list(request: Request, appid: str) -> None:
    passed(request, Step.ALLOW_LIST)
    nets = await run_in_threadpool(request.app.state.policy.allowed, appid)
    allowlist.check(client_address(request), nets)


def query(request: Request, appid: str, begin: dt.date, end: dt.date, **kw: Any) -> PortraitQuery:
    """The portrait query of a read, with the app's small-count threshold."""
    passed(request, Step.THRESHOLD)
    threshold = request.app.state.thresholds.get(appid)
    return make_query(appid, begin, end, threshold=threshold, **kw)


async def json_body(request: Request, limit: int | None = None) -> dict[str, Any]:
    """The body as one JSON object: size limit (``max_body_bytes`` unless the route has
    a larger one), gzip, strict parse (44002 / 47001)."""
    passed(request, Step.BODY)
    raw = await read_body(request, limit or request.app.state.settings.max_body_bytes)
    return json_object(raw)


def same_origin(request: Request) -> None:
    """Login CSRF: a form on another site cannot send JSON, nor forge its Origin."""
    passed(request, Step.SAME_ORIGIN)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise Unauthorized("this route takes Content-Type: application/json")
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host", ""):
        raise Unauthorized(f"cross-origin request from {origin[:100]} refused")


async def session(request: Request) -> Session:
    """The request's live dashboard session (its grant re-checked: docs/dashboard.md);
    41001 / 40001 / 42001 otherwise."""
    passed(request, Step.READ)
    live: Session = await run_in_threadpool(
        request.app.state.sessions.get, request.cookies.get(COOKIE)
    )
    return live


async def session_reader(request: Request, appid: str) -> None:
    """A dashboard session that may read ``appid``."""
    if not (await session(request)).may_read(appid):
        raise Unauthorized("the session belongs to another app")


async def token_reader(request: Request, token: str | None) -> str:
    """The appid of an app's access_token (authorizer tokens speak on the datacube only)."""
    passed(request, Step.READ)
    appid: str = await run_in_threadpool(request.app.state.auth.appid_for, token)
    return appid


WRITES_NEED_THE_KEY: Final = (
    "writes need the app's ingest key as Authorization: Bearer KEY "
    "(userportrait apps ingest-key --appid APPID); access tokens only read"
)


async def writer(request: Request) -> str:
    """The appid whose ingest key the request carries (``Authorization: Bearer KEY``), from
    a listed address.

    A read token instead (``access_token=`` or Bearer) is 48001, so a reader cannot post
    fake users past the small-count threshold (docs/privacy.md).
    """
    passed(request, Step.WRITE)
    state = request.app.state
    header = request.headers.get("authorization", "")
    key = header[7:].strip() if header[:7].lower() == "bearer " else None
    if not key and request.query_params.get("access_token"):
        raise Unauthorized(WRITES_NEED_THE_KEY)
    try:
        appid: str = await run_in_threadpool(state.auth.appid_for_ingest_key, key)
    except InvalidCredential:
        if await run_in_threadpool(_is_read_token, state, key or ""):
            raise Unauthorized(WRITES_NEED_THE_KEY) from None
        raise
    await allow_list(request, appid)
    return appid


def _is_read_token(state: Any, token: str) -> bool:
    """Whether ``token`` is (or was) a token of the read side: an app's or an authorizer's."""
    try:
        state.callers.resolve(token)
    except InvalidCredential:
        return False
    except AuthError:  # expired, or an authorizer's without the permission: still a token
        return True
    return True


async def reads_app(request: Request, appid: str) -> None:
    """The policy of every read of ``appid`` once its credential is known, in one look:
    the allow-list, and API-security mode — an app in that mode is read only sealed,
    through the datacube routes (the threshold comes with ``query``)."""
    passed(request, Step.ALLOW_LIST)
    passed(request, Step.SECURITY)
    nets, keys = await run_in_threadpool(request.app.state.policy.of, appid)
    allowlist.check(client_address(request), nets)
    if keys is not None:
        raise Unauthorized(
            f"{appid} is in API-security mode: its portraits are served only sealed, "
            "through the WeChat routes (docs/api.md)"
        )


# -- the datacube's door (WeChat's order) ------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Admitted:
    appid: str
    body: bytes
    keys: AppKeys | None
    urlpath: str


async def datacube(request: Request) -> Admitted:
    """Token or authorizer token (41001/40001/42001/61007), IP allow-list (40164, app tokens
    only: a platform's own list is WeChat's to keep), API-security envelope (40231-40240),
    quota (45009/45011); yields the plaintext body. Errors are plaintext, as WeChat's are."""
    state = request.app.state
    settings = state.settings
    passed(request, Step.READ)
    caller = await run_in_threadpool(
        state.callers.resolve, request.query_params.get("access_token")
    )
    appid = caller.appid
    passed(request, Step.ALLOW_LIST)
    nets, keys = await run_in_threadpool(state.policy.of, appid)
    if caller.component_appid is None:
        allowlist.check(client_address(request), nets)
    passed(request, Step.BODY)
    raw = await read_body(request, settings.max_body_bytes)  # gzip, limits, disconnects
    # Signatures name WeChat's URL, not ours: clients sign the canonical one (§5.4).
    urlpath = settings.wechat_base_url.rstrip("/") + request.url.path
    passed(request, Step.SECURITY)
    if keys is None:
        if request.headers.get(SIGNATURE_HEADER) or request.headers.get(APPID_HEADER):
            raise NoSymmetricKey(f"API-security mode is off for {appid}")
    else:
        window = settings.api_security_window_s
        # RSA and AES off the event loop, like every other blocking step.
        opened = await run_in_threadpool(
            open_request, keys, urlpath, request.headers, raw, now=time.time(), window_s=window
        )
        await run_in_threadpool(state.policy.use_nonce, appid, opened.nonce, window)
        raw = json.dumps(opened.params).encode()
    passed(request, Step.QUOTA)
    if state.quota.per_day:  # counted in SQLite: off the event loop
        await run_in_threadpool(state.quota.charge, appid)
    else:
        state.quota.charge(appid)
    return Admitted(appid, raw, keys, urlpath)
