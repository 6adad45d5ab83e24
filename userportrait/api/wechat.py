"""WeChat-compatible routes: tokens, the datacube portrait, and the cloud-call form."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from userportrait.api.errors import WeChatJSON, error_body, rid_of
from userportrait.errors import InvalidGrantType, InvalidRequest, RequirePost, ServiceError
from userportrait.portrait.request import make_query, parse_body

router = APIRouter(include_in_schema=False)
PORTRAIT_PATH = "/datacube/getweanalysisappiduserportrait"
CLOUD_PATH = "/wxa/cloud/analysis.getUserPortrait"


def _need(value: str | None, name: str) -> str:
    if not value:
        raise InvalidRequest(f"{name} missing")
    return value


@router.get("/cgi-bin/token")
async def token(
    request: Request, grant_type: str | None = None, appid: str | None = None,
    secret: str | None = None,
) -> WeChatJSON:  # fmt: skip
    if grant_type != "client_credential":
        raise InvalidGrantType()
    auth = request.app.state.auth
    issued = await run_in_threadpool(
        auth.issue_token, _need(appid, "appid"), _need(secret, "secret")
    )
    return WeChatJSON({"access_token": issued.token, "expires_in": issued.expires_in})


@router.post("/cgi-bin/stable_token")
async def stable_token(request: Request) -> WeChatJSON:
    body = _json_object(await request.body())
    if body.get("grant_type") != "client_credential":
        raise InvalidGrantType()
    appid, secret = body.get("appid"), body.get("secret")
    force = body.get("force_refresh", False)
    if not isinstance(appid, str) or not isinstance(secret, str) or not isinstance(force, bool):
        raise InvalidRequest("appid and secret must be strings, force_refresh a boolean")
    issued = await run_in_threadpool(request.app.state.auth.stable_token, appid, secret, force)
    return WeChatJSON({"access_token": issued.token, "expires_in": issued.expires_in})


def _json_object(raw: bytes) -> dict[str, Any]:
    from userportrait.errors import EmptyPostData

    if not raw.strip():
        raise EmptyPostData()
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidRequest("body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidRequest("body must be a JSON object")
    return body


async def _portrait(request: Request, camel: bool) -> dict[str, Any]:
    state = request.app.state
    appid = await run_in_threadpool(state.auth.appid_for, request.query_params.get("access_token"))
    state.quota.charge(appid)
    begin, end = parse_body(await request.body(), camel=camel)
    query = make_query(appid, begin, end, wechat_limits=state.settings.wechat_limits)
    body: dict[str, Any] = await state.run_portrait(query)
    return body


@router.post(PORTRAIT_PATH)
async def user_portrait(request: Request) -> WeChatJSON:
    return WeChatJSON(await _portrait(request, camel=False))


@router.post(CLOUD_PATH)
async def cloud_user_portrait(request: Request) -> WeChatJSON:
    """The cloud-call form: camelCase in and out, errCode/errMsg on every answer."""
    from userportrait.portrait.result import to_cloud

    try:
        return WeChatJSON(to_cloud(await _portrait(request, camel=True)))
    except ServiceError as exc:
        body = error_body(exc, rid_of(request))
        return WeChatJSON({
            "errCode": body["errcode"],
            "errMsg": f"openapi.analysis.getUserPortrait:fail {body['errmsg']}",
        })  # fmt: skip


@router.get(PORTRAIT_PATH)
@router.get(CLOUD_PATH)
@router.get("/cgi-bin/stable_token")
async def require_post() -> None:
    raise RequirePost()
