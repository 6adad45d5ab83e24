"""The native API (``/v1``): any window, JSON or CSV, documented in OpenAPI."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse

from userportrait import __version__
from userportrait.api.errors import WeChatJSON
from userportrait.errors import Unauthorized
from userportrait.portrait.export import portrait_csv
from userportrait.portrait.request import make_query, parse_date

router = APIRouter(prefix="/v1", tags=["native"])


async def app_of_token(
    request: Request, access_token: str | None, authorization: str | None
) -> str:
    token = access_token
    if not token and authorization and authorization.lower().startswith("bearer "):
        token = authorization[7:].strip()
    appid: str = await run_in_threadpool(request.app.state.auth.appid_for, token)
    return appid


@router.get(
    "/apps/{appid}/portrait",
    summary="Portrait of new and active users for any window",
    responses={200: {"description": "WeChat's success body (JSON) or its rows (CSV)",
                     "content": {"text/csv": {}}}},
)  # fmt: skip
async def native_portrait(
    request: Request,
    appid: str,
    begin: Annotated[str, Query(description="First day, yyyymmdd or yyyy-mm-dd")],
    end: Annotated[str, Query(description="Last day (inclusive)")],
    format: Annotated[Literal["json", "csv"], Query()] = "json",
    access_token: Annotated[str | None, Query(description="The app's access_token")] = None,
    authorization: Annotated[str | None, Header(description="Bearer <access_token>")] = None,
) -> Any:
    if await app_of_token(request, access_token, authorization) != appid:
        raise Unauthorized("the access_token belongs to another app")
    query = make_query(appid, parse_date(begin, "begin"), parse_date(end, "end"))
    body = await request.app.state.run_portrait(query)
    if format == "csv":
        return PlainTextResponse(portrait_csv(body), media_type="text/csv; charset=utf-8")
    return WeChatJSON(body)


health = APIRouter(tags=["health"])


@health.get("/healthz", summary="Liveness and store version")
async def healthz(request: Request) -> dict[str, Any]:
    version = await run_in_threadpool(request.app.state.lake.catalog.version)
    return {"status": "ok", "version": __version__, "store_version": version}
