"""The dashboard: the page at ``/``, its assets, sign-in / sign-out, and the offline ``/docs``.

The page reads its portraits from the native API (``/v1/apps/{appid}/portrait``), which
accepts the session cookie as well as an access_token, so the dashboard shows exactly what
the API answers. The session id lives only in an HttpOnly, SameSite=Strict cookie; a
sign-in link carries its one-time code in the URL fragment, which browsers never send, and
the page posts it here (docs/dashboard.md).
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from userportrait.api import doors
from userportrait.api.doors import READS_APP, Step, door
from userportrait.api.errors import WeChatJSON
from userportrait.dashboard import STATIC_DIR
from userportrait.dashboard.sessions import COOKIE, Session, SessionStore
from userportrait.errors import InvalidRequest
from userportrait.portrait.request import parse_date
from userportrait.portrait.trend import daily_trend

ASSETS: Final = "/assets"
#: Everything from this server only; ECharts sets inline styles on the nodes it draws.
CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)
router = APIRouter(prefix="/dashboard", tags=["dashboard"], include_in_schema=False)


def sessions(request: Request) -> SessionStore:
    store: SessionStore = request.app.state.sessions
    return store


def _ok(request: Request, body: dict[str, Any], sid: str | None = None) -> WeChatJSON:
    res = WeChatJSON({"errcode": 0, "errmsg": "ok", **body})
    res.headers["Cache-Control"] = "no-store"
    if sid is not None:
        res.set_cookie(
            COOKIE, sid, max_age=sessions(request).session_ttl, path="/", httponly=True,
            samesite="strict", secure=request.url.scheme == "https",
        )  # fmt: skip
    return res


async def _json_object(request: Request) -> dict[str, str]:
    body = await doors.json_body(request)
    if not all(isinstance(v, str) for v in body.values()):
        raise InvalidRequest("body must be a JSON object of strings")
    return body


async def _whoami(request: Request, session: Session) -> dict[str, Any]:
    if session.appid is not None:
        apps = [session.appid]
    else:
        apps = [a for a, _ in await run_in_threadpool(request.app.state.auth.apps)]
    return {"admin": session.appid is None, "apps": apps, "expires_at": int(session.expires_at)}


@router.post("/signin")
@door(Step.SAME_ORIGIN, Step.BODY, Step.ALLOW_LIST, Step.SECRET)
async def signin(request: Request) -> WeChatJSON:
    """Sign in with ``{"appid", "secret"}``, ``{"admin_key"}`` or a link's ``{"code"}``.

    Every way is a secret check under the brute-force limits; an app's sign-in (by secret
    or by link) holds to the app's IP allow-list, as its token calls do."""
    doors.same_origin(request)
    body = await _json_object(request)
    store = sessions(request)
    appid: str | None
    if "code" in body:
        code = body["code"]
        appid = await doors.secret(request, "signin-code", lambda: store.redeem(code), cheap=True)
        await doors.allow_list(request, appid)
    elif "admin_key" in body:
        key = body["admin_key"]
        await doors.secret(request, "admin", lambda: store.check_admin_key(key), cheap=True)
        doors.passed(request, Step.ALLOW_LIST)  # the admin key is the server's, no app's
        appid = None
    else:
        auth = request.app.state.auth
        appid, secret = body.get("appid"), body.get("secret")
        if appid:
            await doors.allow_list(request, appid)
        appid = await doors.secret(
            request,
            f"app:{appid}" if appid else None,
            lambda: auth.check_secret(appid, secret),
            known=auth.known_secret(appid, secret),
        )
    sid = await run_in_threadpool(store.start, appid)
    return _ok(request, await _whoami(request, await run_in_threadpool(store.get, sid)), sid)


@router.post("/signout")
@door()  # ending a session needs no proof: a forged sign-out only signs the browser out
async def signout(request: Request) -> WeChatJSON:
    await run_in_threadpool(sessions(request).end, request.cookies.get(COOKIE))
    res = _ok(request, {})
    res.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return res


@router.get("/me")
@door(Step.READ)
async def me(request: Request) -> WeChatJSON:
    return _ok(request, await _whoami(request, await doors.session(request)))


@router.get("/trend")
@door(*READS_APP)
async def trend(
    request: Request,
    appid: Annotated[str, Query()],
    begin: Annotated[str, Query()],
    end: Annotated[str, Query()],
) -> WeChatJSON:
    """Active and new users per day of the window (through the server's portrait path)."""
    await doors.session_reader(request, appid)
    await doors.reads_app(request, appid)
    query = doors.query(request, appid, parse_date(begin, "begin"), parse_date(end, "end"))
    return _ok(request, {"days": await daily_trend(query, request.app.state.portraits.run)})


@door()
async def page(request: Request) -> Response:
    res = FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8")
    res.headers.update(
        {"Content-Security-Policy": CSP, "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    )  # fmt: skip
    return res


@door()
async def docs(request: Request) -> HTMLResponse:
    """Swagger UI from this package's assets (FastAPI's default loads it from a CDN)."""
    swagger = f"{ASSETS}/vendor/swagger-ui"
    return get_swagger_ui_html(
        openapi_url=request.app.openapi_url or "/openapi.json",
        title=f"{request.app.title} - API docs",
        swagger_js_url=f"{swagger}/swagger-ui-bundle.js",
        swagger_css_url=f"{swagger}/swagger-ui.css",
        swagger_favicon_url=f"{swagger}/favicon-32x32.png",
    )


def install(app: FastAPI) -> None:
    """Routes of the dashboard and ``/docs`` (create the app with ``docs_url=None``)."""
    app.include_router(router)
    app.add_route("/", page, methods=["GET"], include_in_schema=False)
    app.add_route("/docs", docs, methods=["GET"], include_in_schema=False)
    app.mount(ASSETS, StaticFiles(directory=STATIC_DIR), name="assets")
