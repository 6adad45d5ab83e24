"""A request body that must be one JSON object (the WeChat routes), read strictly."""

from __future__ import annotations

from typing import Any

import orjson

from userportrait.errors import EmptyPostData, InvalidRequest


def json_object(raw: bytes) -> dict[str, Any]:
    """The object; 44002 for an empty body, 47001 for anything but one JSON object.

    orjson refuses what has no faithful reading (invalid UTF-8, a lone surrogate escape,
    NaN, numbers beyond a double, nesting deeper than 1024) with one error, where Python's
    json raised RecursionError or ValueError on some of them.
    """
    if not raw.strip():
        raise EmptyPostData()
    try:
        body = orjson.loads(raw.removeprefix(b"\xef\xbb\xbf"))  # a BOM, as json allowed
    except orjson.JSONDecodeError:
        raise InvalidRequest("body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidRequest("body must be a JSON object")
    return body
