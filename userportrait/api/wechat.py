"""WeChat-compatible routes: tokens, the datacube portrait, and the cloud-call form.

Each handler reads what WeChat's clients send (raw bodies, whatever the Content-Type), calls
one domain function and serializes; errors are raised and rendered by ``api/errors.py``.
A GET on a POST-only route is a 405 there, answered as 43002 ``require POST method``.
"""

from __future__ import annotations

import json
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from userportrait.api.errors import CLOUD_PREFIX, WeChatJSON
from userportrait.auth.store import Issued
from userportrait.errors import EmptyPostData, InvalidGrantType, InvalidRequest
from userportrait.portrait.request import make_query, parse_body
from userportrait.portrait.result import to_cloud

router = APIRouter(tags=["WeChat-compatible"])
PORTRAIT_PATH: Final = "/datacube/getweanalysisappiduserportrait"
CLOUD_PATH: Final = CLOUD_PREFIX + "analysis.getUserPortrait"
GRANT_TYPE: Final = "client_credential"

_TOKEN_DOC: Final[dict[int | str, dict[str, Any]]] = {
    200: {"description": '`{"access_token": "…", "expires_in": 7200}`'}
}


def _json_body(description: str, example: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI text for a route that reads its raw body itself."""
    return {
        "requestBody": {
            "description": description,
            "content": {"application/json": {"example": example}},
        }
    }


@router.get("/cgi-bin/token", summary="access_token (auth.getAccessToken)", responses=_TOKEN_DOC)
async def token(
    request: Request,
    grant_type: str | None = None,
    appid: str | None = None,
    secret: str | None = None,
) -> WeChatJSON:
    if grant_type != GRANT_TYPE:
        raise InvalidGrantType()
    issued = await _guarded(request, appid, secret, "issue_token", appid, secret)
    return WeChatJSON({"access_token": issued.token, "expires_in": issued.expires_in})


@router.post(
    "/cgi-bin/stable_token",
    summary="Stable access_token (auth.getStableAccessToken)",
    responses=_TOKEN_DOC,
    openapi_extra=_json_body(
        "JSON, whatever the Content-Type",
        {"grant_type": GRANT_TYPE, "appid": "wx…", "secret": "…", "force_refresh": False},
    ),
)
async def stable_token(request: Request) -> WeChatJSON:
    body = _json_object(await request.body())
    if body.get("grant_type") != GRANT_TYPE:
        raise InvalidGrantType()
    appid, secret = body.get("appid"), body.get("secret")
    force = body.get("force_refresh", False)
    if not isinstance(appid, str | None) or not isinstance(secret, str | None):
        raise InvalidRequest("appid and secret must be strings")
    if not isinstance(force, bool):
        raise InvalidRequest("force_refresh must be true or false")
    issued = await _guarded(request, appid, secret, "stable_token", appid, secret, force)
    return WeChatJSON({"access_token": issued.token, "expires_in": issued.expires_in})


async def _guarded(request: Request, appid: str | None, secret: str | None, method: str,
                   *args: Any) -> Issued:  # fmt: skip
    """An AuthStore call that checks a secret, under the brute-force limits (auth/limits.py)."""
    auth = request.app.state.auth
    client = request.client.host if request.client else "unknown"

    async def run() -> Issued:
        issued: Issued = await run_in_threadpool(getattr(auth, method), *args)
        return issued

    cheap = auth.known_secret(appid, secret)
    result: Issued = await request.app.state.guard.check(appid, client, run, cheap)
    return result


def _json_object(raw: bytes) -> dict[str, Any]:
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
    query = make_query(
        appid, begin, end, wechat_limits=state.settings.wechat_limits,
        threshold=state.thresholds.get(appid),
    )  # fmt: skip
    body: dict[str, Any] = await state.run_portrait(query)
    return body


@router.post(
    PORTRAIT_PATH,
    summary="User portrait (analysis.getUserPortrait)",
    openapi_extra=_json_body(
        "JSON, whatever the Content-Type; dates yyyymmdd or yyyy-mm-dd",
        {"begin_date": "20170611", "end_date": "20170617"},
    ),
)
async def user_portrait(request: Request) -> WeChatJSON:
    return WeChatJSON(await _portrait(request, camel=False))


@router.post(
    CLOUD_PATH,
    summary="User portrait, cloud-call form (camelCase in and out)",
    openapi_extra=_json_body(
        "JSON, whatever the Content-Type", {"beginDate": "20170611", "endDate": "20170617"}
    ),
)
async def cloud_user_portrait(request: Request) -> WeChatJSON:
    return WeChatJSON(to_cloud(await _portrait(request, camel=True)))
