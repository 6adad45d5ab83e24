"""Client-side errors: the server's own classes, mapped back from errcodes.

An error body raises ``error_for_code(errcode)`` (``InvalidCredential`` for 40001,
``InvalidDateRange`` for 61501, …) with ``str(exc)`` = the server's errmsg (rid included)
and ``exc.detail`` = the part after the class's own text. A code userportrait has no class
for (say 40164 from a proxy) raises a ``ServiceError`` subclass whose ``errcode`` is that code.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from userportrait.errors import ServiceError, error_for_code

_RID = re.compile(r",? rid: [0-9a-f-]+$")


class TransportError(ServiceError):
    """The server could not be reached or answered outside the protocol (non-JSON, 5xx)."""

    errmsg = "transport error"


@cache
def _unknown(errcode: int) -> type[ServiceError]:
    return type(f"ServiceError{errcode}", (ServiceError,), {"errcode": errcode})


def error_from_body(body: dict[str, Any]) -> ServiceError:
    """The exception for a WeChat (or cloud-call) error body."""
    code = int(body.get("errcode", body.get("errCode", -1)))
    errmsg = str(body.get("errmsg", body.get("errMsg", "")))
    cls = error_for_code(code)
    if cls is ServiceError and code != ServiceError.errcode:
        cls = _unknown(code)
    text = _RID.sub("", errmsg)
    detail = text[len(cls.errmsg) :].lstrip(": ") if text.startswith(cls.errmsg) else text
    exc = cls(detail or None)
    exc.args = (errmsg,)
    return exc


def raise_for_body(body: object) -> None:
    if isinstance(body, dict) and body.get("errcode", 0) not in (0, None):
        raise error_from_body(body)
