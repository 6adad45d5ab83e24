"""WeChat-compatible routes: tokens, the datacube portrait, and the cloud-call form.

Each handler reads what WeChat's clients send (raw bodies, whatever the Content-Type), calls
one domain function and serializes; errors are raised and rendered by ``api/errors.py``.
A GET on a POST-only route is a 405 there, answered as 43002 ``require POST method``.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter, Request, Security
from starlette.responses import Response

from userportrait.api import doors
from userportrait.api.doors import Step, door
from userportrait.api.errors import CLOUD_PREFIX, WeChatJSON
from userportrait.api.security import respond
from userportrait.auth.store import Issued
from userportrait.errors import InvalidGrantType, InvalidRequest
from userportrait.portrait.request import parse_body
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
@door(Step.ALLOW_LIST, Step.SECRET)
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
@door(Step.BODY, Step.ALLOW_LIST, Step.SECRET)
async def stable_token(request: Request) -> WeChatJSON:
    body = await doors.json_body(request)
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
    """An AuthStore call that checks the app's secret, from a listed address, under the
    brute-force limits (api/doors.py)."""
    auth = request.app.state.auth
    if appid:
        await doors.allow_list(request, appid)
    else:
        doors.passed(request, Step.ALLOW_LIST)  # no app, no list: 41002 follows
    issued: Issued = await doors.secret(
        request,
        f"app:{appid}" if appid else None,
        lambda: getattr(auth, method)(*args),
        known=auth.known_secret(appid, secret),
    )
    return issued


async def _portrait(request: Request, camel: bool) -> Response:
    state = request.app.state
    admitted = await doors.datacube(request)
    begin, end = parse_body(admitted.body, camel=camel)
    query = doors.query(
        request, admitted.appid, begin, end, wechat_limits=state.settings.wechat_limits
    )
    body: dict[str, Any] = await state.portraits.run(query)
    return await respond(request, admitted, to_cloud(body) if camel else body)


@router.post(
    PORTRAIT_PATH,
    dependencies=[Security(doors.ACCESS_TOKEN)],
    summary="User portrait (analysis.getUserPortrait)",
    openapi_extra=_json_body(
        "JSON, whatever the Content-Type; dates yyyymmdd or yyyy-mm-dd. In API-security "
        "mode: `{iv, data, authtag}` with the Wechatmp-* headers (docs/api.md)",
        {"begin_date": "20170611", "end_date": "20170617"},
    ),
)
@door(Step.READ, Step.ALLOW_LIST, Step.BODY, Step.SECURITY, Step.QUOTA, Step.THRESHOLD)
async def user_portrait(request: Request) -> Response:
    return await _portrait(request, camel=False)


@router.post(
    CLOUD_PATH,
    dependencies=[Security(doors.ACCESS_TOKEN)],
    summary="User portrait, cloud-call form (camelCase out; camelCase or snake_case in)",
    openapi_extra=_json_body(
        "JSON, whatever the Content-Type", {"beginDate": "20170611", "endDate": "20170617"}
    ),
)
@door(Step.READ, Step.ALLOW_LIST, Step.BODY, Step.SECURITY, Step.QUOTA, Step.THRESHOLD)
async def cloud_user_portrait(request: Request) -> Response:
    return await _portrait(request, camel=True)
