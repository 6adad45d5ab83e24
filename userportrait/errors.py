"""The one error hierarchy of userportrait; each class carries its WeChat errcode.

Domain code raises these; ``api/errors.py`` renders them as WeChat error bodies and the
CLI prints ``errmsg`` on one line. The client maps errcodes back to the same classes.

    ServiceError (-1, system error)
    ├── InvalidRequest (47001, data format error)
    │   ├── EmptyPostData (44002)
    │   ├── InvalidGrantType (40002)
    │   ├── InvalidAppId (40013)
    │   ├── InvalidDate (61500, date format error)
    │   ├── InvalidDateRange (61501, date range error)
    │   ├── InvalidArgs (40097, invalid args) — a bad filter, by or compare parameter
    │   └── SegmentTooSmall (61502) — a filtered segment below the app's small-count k
    ├── AuthError
    │   ├── InvalidCredential (40001)
    │   ├── InvalidAppSecret (40125)
    │   ├── AccessTokenMissing (41001)
    │   ├── AppIdMissing (41002)
    │   ├── AppSecretMissing (41004)
    │   ├── AccessTokenExpired (42001)
    │   ├── Unauthorized (48001)
    │   ├── IpNotAllowed (40164) — the caller's address is not in the app's allow-list
    │   ├── ComponentError — third-party platform (docs/api.md)
    │   │   ├── NotAuthorized (61003) — the app has not authorised the platform
    │   │   ├── TicketExpired (61005) / TicketInvalid (61006)
    │   │   ├── ComponentApiUnauthorized (61007) — permission set not granted
    │   │   ├── CodeInvalid (61009) / CodeExpired (61010)
    │   │   └── RefreshTokenInvalid (61023)
    │   └── SecurityError — API-security mode, 40230-40240 (docs/api.md)
    │       ├── MissingSerial (40230), MissingTimestamp (40231), MissingSignature (40232)
    │       ├── MissingAppid (40233), InvalidSignature (40234), InvalidEncrypt (40235)
    │       ├── InvalidMpAppid (40236), AppidTokenMismatch (40237)
    │       └── NoSymmetricKey (40238), NoPublicKey (40239), ExpiredTimestamp (40240)
    ├── RequireGet (43001)
    ├── RequirePost (43002)
    ├── QuotaExceeded
    │   ├── DailyQuotaExceeded (45009)
    │   └── MinuteQuotaExceeded (45011)
    ├── PayloadTooLarge (45002 / HTTP 413)
    ├── Busy (-1 / HTTP 503, retryable)
    ├── QueryTimeout (-1, system busy) — a portrait ran past query_time_limit_ms
    ├── ClientDisconnected (-1 / HTTP 400) — the client left before its body was read
    └── InputError (-1) — CLI-side problems: missing file, unknown format, wrong columns
"""

from __future__ import annotations

from typing import ClassVar


class ServiceError(Exception):
    """Root of every error userportrait raises on purpose."""

    errcode: ClassVar[int] = -1
    errmsg: ClassVar[str] = "system error"
    http_status: ClassVar[int] = 200

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """The errmsg as sent, without the rid suffix."""
        return f"{self.errmsg}: {self.detail}" if self.detail else self.errmsg


class InvalidRequest(ServiceError):
    errcode = 47001
    errmsg = "data format error"


class EmptyPostData(InvalidRequest):
    errcode = 44002
    errmsg = "empty post data"


class InvalidGrantType(InvalidRequest):
    errcode = 40002
    errmsg = "invalid grant_type"


class InvalidAppId(InvalidRequest):
    errcode = 40013
    errmsg = "invalid appid"


class InvalidDate(InvalidRequest):
    errcode = 61500
    errmsg = "date format error"


class InvalidDateRange(InvalidRequest):
    errcode = 61501
    errmsg = "date range error"


class InvalidArgs(InvalidRequest):
    errcode = 40097
    errmsg = "invalid args"


class SegmentTooSmall(InvalidRequest):
    """Not WeChat's: a filter whose segment has fewer than the app's k active users in a
    window would open a way round the small-count threshold (docs/privacy.md)."""

    errcode = 61502
    errmsg = "segment too small"


class AuthError(ServiceError):
    errcode = 40001
    errmsg = "invalid credential, access_token is invalid or not latest"


class InvalidCredential(AuthError):
    pass


class InvalidAppSecret(AuthError):
    errcode = 40125
    errmsg = "invalid appsecret"


class AccessTokenMissing(AuthError):
    errcode = 41001
    errmsg = "access_token missing"


class AccessTokenExpired(AuthError):
    errcode = 42001
    errmsg = "access_token expired"


class AppIdMissing(AuthError):
    errcode = 41002
    errmsg = "appid missing"


class AppSecretMissing(AuthError):
    errcode = 41004
    errmsg = "appsecret missing"


class Unauthorized(AuthError):
    errcode = 48001
    errmsg = "api unauthorized"


class IpNotAllowed(AuthError):
    """40164; the message names the address as WeChat's does (docs/api.md "Errors")."""

    errcode = 40164
    errmsg = "invalid ip"

    @property
    def message(self) -> str:
        return f"invalid ip {self.detail}, not in whitelist" if self.detail else self.errmsg


class ComponentError(AuthError):
    """Third-party platform (第三方平台) refusals."""

    errcode = 61003
    errmsg = "component is not authorized by this account"


class NotAuthorized(ComponentError):
    pass


class TicketExpired(ComponentError):
    errcode = 61005
    errmsg = "component ticket is expired"


class TicketInvalid(ComponentError):
    errcode = 61006
    errmsg = "component ticket is invalid"


class ComponentApiUnauthorized(ComponentError):
    errcode = 61007
    errmsg = "api is unauthorized to component"


class CodeInvalid(ComponentError):
    errcode = 61009
    errmsg = "code is invalid"


class CodeExpired(ComponentError):
    errcode = 61010
    errmsg = "code is expired"


class RefreshTokenInvalid(ComponentError):
    errcode = 61023
    errmsg = "refresh_token is invalid"


class SecurityError(AuthError):
    """API-security mode refusals; errmsg is the guide's name (live strings unverified)."""

    errcode = 40234
    errmsg = "API_Invalid_Signature"


class MissingSerial(SecurityError):
    errcode = 40230
    errmsg = "API_Missing_Wechatmp_Serial"


class MissingTimestamp(SecurityError):
    errcode = 40231
    errmsg = "API_Missing_Wechatmp_Timestamp"


class MissingSignature(SecurityError):
    errcode = 40232
    errmsg = "API_Missing_Wechatmp_Signature"


class MissingAppid(SecurityError):
    errcode = 40233
    errmsg = "API_Missing_Wechatmp_Appid"


class InvalidSignature(SecurityError):
    pass


class InvalidEncrypt(SecurityError):
    errcode = 40235
    errmsg = "API_Invalid_Encrypt"


class InvalidMpAppid(SecurityError):
    errcode = 40236
    errmsg = "API_Invalid_Wechatmp_Appid"


class AppidTokenMismatch(SecurityError):
    errcode = 40237
    errmsg = "API_Invalid_Wechatmp_Appidmatch"


class NoSymmetricKey(SecurityError):
    errcode = 40238
    errmsg = "API_NoExist_DevSecretSym"


class NoPublicKey(SecurityError):
    errcode = 40239
    errmsg = "API_NoExist_DevSecretAsym"


class ExpiredTimestamp(SecurityError):
    errcode = 40240
    errmsg = "API_Expired_Wechatmp_Timestamp"


class RequireGet(ServiceError):
    errcode = 43001
    errmsg = "require GET method"


class RequirePost(ServiceError):
    errcode = 43002
    errmsg = "require POST method"


class QuotaExceeded(ServiceError):
    errcode = 45009
    errmsg = "reach max api daily quota limit"


class DailyQuotaExceeded(QuotaExceeded):
    pass


class MinuteQuotaExceeded(QuotaExceeded):
    errcode = 45011
    errmsg = "api minute-quota reach limit, must slower, retry next minute"


class PayloadTooLarge(ServiceError):
    errcode = 45002
    errmsg = "content size out of limit"
    http_status = 413


class Busy(ServiceError):
    errcode = -1
    errmsg = "system busy, retry later"
    http_status = 503


class QueryTimeout(ServiceError):
    """HTTP 200 (unlike Busy), so WeChat SDKs see errcode -1 rather than a transport error."""

    errmsg = "system busy"


class ClientDisconnected(ServiceError):
    """Nobody reads the answer; raised so that the request ends as an INFO line."""

    errmsg = "client disconnected"
    http_status = 400


class InputError(ServiceError):
    """A problem with what the user handed the CLI (file, format, columns)."""

    errmsg = "input error"

    @property
    def message(self) -> str:
        return self.detail or self.errmsg


def _all_subclasses(cls: type[ServiceError]) -> list[type[ServiceError]]:
    out: list[type[ServiceError]] = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


def error_for_code(errcode: int) -> type[ServiceError]:
    """The class to raise for ``errcode`` seen in a response body.

    The most specific class carrying the code (40001 -> InvalidCredential, 45009 ->
    DailyQuotaExceeded), so that ``except`` clauses on either the leaf or its parents work;
    -1 and unknown codes give ServiceError.
    """
    if errcode == ServiceError.errcode:  # shared by Busy, InputError, client-side errors, …
        return ServiceError
    best: type[ServiceError] = ServiceError
    for cls in _all_subclasses(ServiceError):
        if cls.errcode != errcode:
            continue
        if best is ServiceError or len(cls.__mro__) > len(best.__mro__):
            best = cls
    return best
