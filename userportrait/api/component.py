"""Third-party platform routes (``/cgi-bin/component/…``), WeChat's bodies and errcodes.

``api_component_token`` authenticates with the platform's secret and a current
``component_verify_ticket``; the others with ``?component_access_token=`` and the body's
``component_appid``, which must be the token's platform (40013 otherwise).
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter, Request, Security
from fastapi.concurrency import run_in_threadpool

from userportrait.api import doors
from userportrait.api.doors import Step, door
from userportrait.api.errors import WeChatJSON
from userportrait.auth.component import Authorization, ComponentStore
from userportrait.errors import InvalidAppId, InvalidRequest

router = APIRouter(prefix="/cgi-bin/component", tags=["third-party platform"])
_FIELDS: Final = ("component_appid", "authorization_code", "authorizer_appid",
                  "authorizer_refresh_token", "component_appsecret", "component_verify_ticket")  # fmt: skip


async def _body(request: Request) -> dict[str, str | None]:
    """The JSON object sent (whatever the Content-Type), its known fields as strings."""
    body = await doors.json_body(request)
    for key in _FIELDS:
        if not isinstance(body.get(key), str | None):
            raise InvalidRequest(f"{key} must be a string")
    return {key: body.get(key) for key in _FIELDS}


async def _authenticated(request: Request) -> tuple[ComponentStore, dict[str, str | None], str]:
    """The store, the body and the platform the component_access_token belongs to."""
    store: ComponentStore = request.app.state.components
    token = request.query_params.get("component_access_token")
    doors.passed(request, Step.PLATFORM)
    comp = await run_in_threadpool(store.component_for, token)
    body = await _body(request)
    if body["component_appid"] != comp:
        raise InvalidAppId("component_appid does not match the component_access_token")
    return store, body, comp


def _func_info(sets: tuple[int, ...]) -> list[dict[str, Any]]:
    return [{"funcscope_category": {"id": s}} for s in sets]


def _authorization(auth: Authorization) -> dict[str, Any]:
    return {
        "authorizer_appid": auth.appid,
        "authorizer_access_token": auth.access_token,
        "expires_in": auth.expires_in,
        "authorizer_refresh_token": auth.refresh_token,
        "func_info": _func_info(auth.func_info),
    }


@router.post("/api_component_token", summary="component_access_token")
@door(Step.BODY, Step.SECRET)
async def component_token(request: Request) -> WeChatJSON:
    body = await _body(request)
    comp, secret = body["component_appid"], body["component_appsecret"]
    ticket = body["component_verify_ticket"]
    store: ComponentStore = request.app.state.components
    subject = f"component:{comp}" if comp else None
    # The ticket first, cheaply: without it a guess never queues for a scrypt check.
    tickets = f"component-ticket:{comp}" if comp else None  # its own count: a right ticket
    await doors.secret(request, tickets, lambda: store.check_ticket(comp, ticket), cheap=True)
    token, expires_in = await doors.secret(
        request,
        subject,
        lambda: store.component_token(comp, secret, ticket),
        known=store.known_secret(comp, secret),
    )
    return WeChatJSON({"component_access_token": token, "expires_in": expires_in})


@router.post(
    "/api_create_preauthcode",
    summary="pre_auth_code",
    dependencies=[Security(doors.COMPONENT_TOKEN)],
)
@door(Step.PLATFORM, Step.BODY)
async def create_preauthcode(request: Request) -> WeChatJSON:
    store, _, comp = await _authenticated(request)
    code, expires_in = await run_in_threadpool(store.preauth_code, comp)
    return WeChatJSON({"pre_auth_code": code, "expires_in": expires_in})


@router.post(
    "/api_query_auth",
    summary="authorization_code -> authorizer tokens",
    dependencies=[Security(doors.COMPONENT_TOKEN)],
)
@door(Step.PLATFORM, Step.BODY)
async def query_auth(request: Request) -> WeChatJSON:
    store, body, comp = await _authenticated(request)
    auth = await run_in_threadpool(store.query_auth, comp, body["authorization_code"])
    return WeChatJSON({"authorization_info": _authorization(auth)})


@router.post(
    "/api_authorizer_token",
    summary="Refresh an authorizer_access_token",
    dependencies=[Security(doors.COMPONENT_TOKEN)],
)
@door(Step.PLATFORM, Step.BODY)
async def authorizer_token(request: Request) -> WeChatJSON:
    store, body, comp = await _authenticated(request)
    auth = await run_in_threadpool(
        store.refresh, comp, body["authorizer_appid"], body["authorizer_refresh_token"]
    )
    return WeChatJSON(
        {
            "authorizer_access_token": auth.access_token,
            "expires_in": auth.expires_in,
            "authorizer_refresh_token": auth.refresh_token,
        }
    )


@router.post(
    "/api_get_authorizer_info",
    summary="An authorizer's account and grant",
    dependencies=[Security(doors.COMPONENT_TOKEN)],
)
@door(Step.PLATFORM, Step.BODY)
async def get_authorizer_info(request: Request) -> WeChatJSON:
    store, body, comp = await _authenticated(request)
    appid = body["authorizer_appid"]
    sets = await run_in_threadpool(store.authorizer_info, comp, appid)
    return WeChatJSON(
        {
            # userportrait knows no nickname or avatar; the appid stands in (docs/api.md).
            "authorizer_info": {"nick_name": appid, "MiniProgramInfo": {}},
            "authorization_info": {"authorizer_appid": appid, "func_info": _func_info(sets)},
        }
    )
