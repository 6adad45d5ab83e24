"""Python client for userportrait's WeChat-compatible and native APIs (imports only httpx).

``Client`` / ``AsyncClient`` read portraits (appid + secret) and send events
(``send_events``, with the app's ``ingest_key``);
``EventBuffer`` / ``AsyncEventBuffer`` send from a web backend (docs/clients.md). Errors are
the server's own classes (``userportrait.errors``), mapped back from errcodes.
"""

from __future__ import annotations

from userportrait.client._buffer import AsyncEventBuffer, BufferFull, BufferStats, EventBuffer
from userportrait.client._client import AsyncClient, Client
from userportrait.client._exceptions import TransportError
from userportrait.client._models import EventsNotSent, Rejected, Retry, SendSummary
from userportrait.errors import (
    AccessTokenExpired,
    AccessTokenMissing,
    AuthError,
    DailyQuotaExceeded,
    EmptyPostData,
    InvalidAppId,
    InvalidAppSecret,
    InvalidCredential,
    InvalidDate,
    InvalidDateRange,
    InvalidRequest,
    MinuteQuotaExceeded,
    QuotaExceeded,
    ServiceError,
    Unauthorized,
)

__all__ = [
    "AccessTokenExpired",
    "AccessTokenMissing",
    "AsyncClient",
    "AsyncEventBuffer",
    "AuthError",
    "BufferFull",
    "BufferStats",
    "Client",
    "DailyQuotaExceeded",
    "EmptyPostData",
    "EventBuffer",
    "EventsNotSent",
    "InvalidAppId",
    "InvalidAppSecret",
    "InvalidCredential",
    "InvalidDate",
    "InvalidDateRange",
    "InvalidRequest",
    "MinuteQuotaExceeded",
    "QuotaExceeded",
    "Rejected",
    "Retry",
    "SendSummary",
    "ServiceError",
    "TransportError",
    "Unauthorized",
]
