"""Client-side errors: the server's own classes, mapped back from errcodes."""

from __future__ import annotations

from userportrait.errors import ServiceError, error_for_code


class TransportError(ServiceError):
    """The server could not be reached or answered outside the protocol (non-JSON, 5xx)."""

    errmsg = "transport error"


def raise_for_body(body: object) -> None:
    if isinstance(body, dict) and body.get("errcode", 0) not in (0, None):
        code = int(body["errcode"])
        exc = error_for_code(code)(None)
        exc.detail = None
        raise _with_message(exc, str(body.get("errmsg", "")), code)


def _with_message(exc: ServiceError, errmsg: str, code: int) -> ServiceError:
    exc.args = (errmsg,)
    exc.server_errmsg = errmsg  # type: ignore[attr-defined]
    exc.server_errcode = code  # type: ignore[attr-defined]
    return exc
