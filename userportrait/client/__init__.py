"""Python client for userportrait's WeChat-compatible and native APIs (imports only httpx)."""

from __future__ import annotations

from userportrait.client._client import AsyncClient, Client
from userportrait.client._exceptions import TransportError
from userportrait.errors import (
    AccessTokenExpired,
    AccessTokenMissing,
    InvalidAppSecret,
    InvalidCredential,
    InvalidDate,
    InvalidDateRange,
    InvalidRequest,
    ServiceError,
)

__all__ = [
    "AccessTokenExpired",
    "AccessTokenMissing",
    "AsyncClient",
    "Client",
    "InvalidAppSecret",
    "InvalidCredential",
    "InvalidDate",
    "InvalidDateRange",
    "InvalidRequest",
    "ServiceError",
    "TransportError",
]
