"""The native API (``/v1``): any window, JSON or CSV, documented in OpenAPI; ``/healthz``."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field

from userportrait import __version__
from userportrait.api import doors
from userportrait.api.doors import READS_APP, door
from userportrait.api.errors import WeChatJSON
from userportrait.dashboard.sessions import COOKIE
from userportrait.errors import Unauthorized
from userportrait.portrait.export import portrait_csv
from userportrait.portrait.request import parse_date
from userportrait.store.state import state_failures

log = logging.getLogger("userportrait.api")
router = APIRouter(prefix="/v1", tags=["native"])


class Item(BaseModel):
    id: int | None = Field(None, description="Value id (absent for devices)")
    name: str
    value: int = Field(description="Distinct users")
    previous: int | None = Field(
        None, description="compare=previous: the value in the window just before (0: absent)"
    )


class Audience(BaseModel):
    province: list[Item]
    city: list[Item]
    genders: list[Item]
    platforms: list[Item]
    devices: list[Item]
    ages: list[Item]


class PortraitBody(BaseModel):
    """WeChat's getUserPortrait success body."""

    ref_date: str = Field(examples=["20240610-20240612"])
    visit_uv_new: Audience
    visit_uv: Audience


class Total(BaseModel):
    value: int | None = Field(description="Distinct users (null: withheld below k)")
    previous: int | None


class Totals(BaseModel):
    visit_uv: Total
    visit_uv_new: Total


class ComparedBody(PortraitBody):
    """``compare=previous``: rows carry ``previous``; the window before and both totals."""

    previous_ref_date: str = Field(examples=["20240607-20240609"])
    totals: Totals


class Key(BaseModel):
    id: int | None = Field(None, description="Value id (absent for devices)")
    name: str


class CrossRow(BaseModel):
    keys: list[Key] = Field(description="One key per ``by`` dimension, in its order")
    value: int
    previous: int | None = None


class CrossBody(BaseModel):
    """``by=A,B``: users per pair of values, rows summing to each audience's users."""

    ref_date: str
    by: list[str] = Field(examples=[["genders", "ages"]])
    visit_uv_new: list[CrossRow]
    visit_uv: list[CrossRow]


class ErrorBody(BaseModel):
    """Every error, HTTP 200: ``errmsg`` ends with `` rid: xxxxxxxx-xxxxxxxx-xxxxxxxx``."""

    errcode: int = Field(examples=[40001])
    errmsg: str = Field(
        examples=["invalid credential, access_token is invalid or not latest rid: 6690ab12-…"]
    )


class Health(BaseModel):
    status: Literal["ok", "degraded", "error"] = Field(
        description="degraded: some app's portrait state failed to update (answers stay "
        "exact, computed from the lake, while it is retried with back-off)"
    )
    version: str
    store_version: int | None = Field(description="Grows with every committed ingest batch")
    state_failures: dict[str, dict[str, Any]] | None = Field(
        None, description="Per appid: error, attempts, last_try, next_try, days_pending"
    )


def bearer(access_token: str | None, authorization: str | None) -> str | None:
    """The query ``access_token``, else the ``Authorization: Bearer`` token."""
    if not access_token and authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return access_token


@router.get(
    "/apps/{appid}/portrait",
    summary="Portrait of new and active users for any window",
    response_model=PortraitBody | ComparedBody | CrossBody | ErrorBody,
    responses={
        200: {
            "description": "WeChat's success body (JSON) or its rows (CSV: ref_date, "
            "audience, dimension, id, name, value[, previous]); with by=A,B a cross-tab "
            "(CSV: audience, A_id, A_name, B_id, B_name, value); errors are ErrorBody, "
            "also HTTP 200.",
            "content": {"text/csv": {}},
        }
    },
)
@door(*READS_APP)
async def native_portrait(
    request: Request,
    appid: str,
    begin: Annotated[str, Query(description="First day, yyyymmdd or yyyy-mm-dd")],
    end: Annotated[str, Query(description="Last day (inclusive)")],
    format: Annotated[Literal["json", "csv"], Query()] = "json",
    compare: Annotated[
        str | None, Query(description="previous: also the window of the same length before")
    ] = None,
    filter: Annotated[
        list[str] | None,
        Query(description="DIM=ID, repeatable (AND); devices by model name (docs/semantics.md)"),
    ] = None,
    by: Annotated[
        str | None, Query(description="DIM,DIM: users per pair of values of two dimensions")
    ] = None,
    access_token: Annotated[str | None, Query(description="The app's access_token")] = None,
    authorization: Annotated[str | None, Header(description="Bearer <access_token>")] = None,
) -> Any:
    if not (access_token or authorization) and COOKIE in request.cookies:
        await doors.session_reader(request, appid)  # the dashboard reads its numbers here
    elif await doors.token_reader(request, bearer(access_token, authorization)) != appid:
        raise Unauthorized("the access_token belongs to another app")
    await doors.reads_app(request, appid)
    query = doors.query(
        request,
        appid,
        parse_date(begin, "begin"),
        parse_date(end, "end"),
        filters=filter or (),
        by=by,
        compare=compare,
    )
    body = await request.app.state.portraits.run(query)
    if format == "csv":
        return PlainTextResponse(portrait_csv(body), media_type="text/csv; charset=utf-8")
    return WeChatJSON(body)


health = APIRouter(tags=["health"])


@health.get(
    "/healthz",
    summary="Liveness: the store answers; versions",
    response_model=Health,
    responses={503: {"model": Health, "description": "The store cannot be read"}},
)
@door()
async def healthz(request: Request) -> JSONResponse:
    lake = request.app.state.lake
    failed: dict[str, Any] = {}
    try:
        version: int | None = await run_in_threadpool(lake.catalog.version)
        failed = await run_in_threadpool(state_failures, lake)
        status, code = ("degraded" if failed else "ok"), 200
    except Exception:
        log.exception("health check: store unreachable")
        version, status, code = None, "error", 503
    body: dict[str, Any] = {"status": status, "version": __version__, "store_version": version}
    if failed:
        body["state_failures"] = failed
    return JSONResponse(body, status_code=code)
