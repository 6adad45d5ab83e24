"""API-security mode (服务端 API 签名加密), exactly as WeChat's (docs/api.md).

Requests: RSA-PSS (SHA-256, MGF1-SHA256, salt 32) over ``urlpath\\nappid\\ntimestamp\\npostdata``
with the app's key, body ``{"iv", "data", "authtag"}`` = AES-256-GCM of the JSON parameters
plus ``_n``/``_appid``/``_timestamp`` with AAD ``urlpath|appid|timestamp|sn``. Responses are
sealed the same way and signed with the platform key, which is generated on first use in
``DATA_DIR/platform_key.pem`` (0600). All cryptography is the ``cryptography`` package's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature as _BadSignature
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from userportrait.errors import (
    AppidTokenMismatch,
    ExpiredTimestamp,
    InvalidEncrypt,
    InvalidMpAppid,
    InvalidRequest,
    InvalidSignature,
    MissingAppid,
    MissingSignature,
    MissingTimestamp,
    NoPublicKey,
)

PSS: Final = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
APPID_HEADER: Final = "Wechatmp-Appid"
TIMESTAMP_HEADER: Final = "Wechatmp-TimeStamp"
SIGNATURE_HEADER: Final = "Wechatmp-Signature"
SERIAL_HEADER: Final = "Wechatmp-Serial"


@dataclass(frozen=True, slots=True)
class AppKeys:
    """One app's API-security configuration (``apps security``)."""

    appid: str
    aes_key: bytes
    aes_sn: str
    public_key: rsa.RSAPublicKey
    public_key_sn: str


@dataclass(frozen=True, slots=True)
class PlatformKey:
    private_key: rsa.RSAPrivateKey
    serial: str

    def public_pem(self) -> str:
        return (
            self.private_key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )


@dataclass(frozen=True, slots=True)
class Opened:
    """A verified, decrypted request: its parameters without the ``_n``/``_appid``/``_timestamp``."""

    params: dict[str, Any]
    nonce: str
    timestamp: int


def b64d(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise InvalidEncrypt(f"{what} must be a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidEncrypt(f"{what} is not base64") from None


def b64e(data: bytes) -> str:
    return base64.b64encode(data).decode()


def aad(urlpath: str, appid: str, timestamp: int | str, sn: str) -> bytes:
    return f"{urlpath}|{appid}|{timestamp}|{sn}".encode()


def signed_string(urlpath: str, appid: str, timestamp: int | str, body: bytes) -> bytes:
    # The 4-field form the official vector verifies with (§5.2); no serial, no trailing \n.
    return f"{urlpath}\n{appid}\n{timestamp}\n".encode() + body


def parse_aes_key(text: str) -> bytes:
    """The 32-byte key as the MP admin shows it (base64, 44 characters)."""
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("aes key: not base64") from None
    if len(key) != 32:
        raise InvalidRequest(f"aes key: {len(key)} bytes; AES-256 needs 32")
    return key


def load_public_key(pem: bytes) -> rsa.RSAPublicKey:
    """An RSA public key from a PEM public key or certificate."""
    try:
        key: object = (
            x509.load_pem_x509_certificate(pem).public_key()
            if b"CERTIFICATE" in pem
            else serialization.load_pem_public_key(pem)
        )
    except ValueError as exc:
        raise InvalidRequest(f"public key: {exc}") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise InvalidRequest("public key: only RSA (RSAwithSHA256) is supported")
    return key


def public_pem(key: rsa.RSAPublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def platform_key(data_dir: Path) -> PlatformKey:
    """The server's signing key, generated on first use (0600); serial = its SHA-256 prefix."""
    path = data_dir / "platform_key.pem"
    if not path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = data_dir / f".platform_key.{secrets.token_hex(4)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # first writer wins when the CLI and a server race
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise InvalidRequest(f"{path}: not an RSA private key")
    der = loaded.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return PlatformKey(loaded, hashlib.sha256(der).hexdigest()[:32])


def open_request(
    keys: AppKeys,
    urlpath: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    window_s: int,
) -> Opened:
    """Verify and decrypt one request, or raise its 40231-40240 refusal (docs/api.md)."""
    appid = headers.get(APPID_HEADER)
    if not appid:
        raise MissingAppid()
    if appid != keys.appid:
        raise AppidTokenMismatch(f"{appid[:64]} is not the access_token's app")
    ts_text = headers.get(TIMESTAMP_HEADER)
    if not ts_text:
        raise MissingTimestamp()
    if not (ts_text.isascii() and ts_text.isdigit()) or abs(now - int(ts_text)) > window_s:
        raise ExpiredTimestamp(f"{ts_text[:20]} is more than {window_s} s from now")
    signature = headers.get(SIGNATURE_HEADER)
    if not signature:
        raise MissingSignature()
    serial = headers.get(SERIAL_HEADER)
    if serial and serial != keys.public_key_sn:
        raise NoPublicKey(f"no public key with serial {serial[:64]}")
    try:
        keys.public_key.verify(
            base64.b64decode(signature),
            signed_string(urlpath, appid, ts_text, body),
            PSS,
            hashes.SHA256(),
        )
    except (_BadSignature, binascii.Error, ValueError):
        raise InvalidSignature() from None
    try:
        envelope = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidEncrypt("body is not JSON") from None
    if not isinstance(envelope, dict):
        raise InvalidEncrypt("body must be {iv, data, authtag}")
    iv, data, tag = (b64d(envelope.get(k), k) for k in ("iv", "data", "authtag"))
    try:
        plain = AESGCM(keys.aes_key).decrypt(
            iv, data + tag, aad(urlpath, appid, ts_text, keys.aes_sn)
        )
        params = json.loads(plain)
    except (InvalidTag, ValueError):
        raise InvalidEncrypt(
            "authtag does not verify (key, sn, urlpath, appid or timestamp)"
        ) from None
    if not isinstance(params, dict):
        raise InvalidEncrypt("plaintext must be a JSON object")
    nonce = params.pop("_n", None)
    if not isinstance(nonce, str) or not nonce:
        raise InvalidEncrypt("_n missing from the plaintext")
    if params.pop("_appid", None) != appid:
        raise InvalidMpAppid("_appid in the plaintext is not Wechatmp-Appid")
    if params.pop("_timestamp", None) != int(ts_text):
        raise ExpiredTimestamp("_timestamp in the plaintext is not Wechatmp-TimeStamp")
    return Opened(params, nonce, int(ts_text))


def seal_response(
    keys: AppKeys, platform: PlatformKey, urlpath: str, payload: dict[str, Any], *, now: float
) -> tuple[dict[str, str], bytes]:
    """Headers and body of an encrypted, signed response (§5.3)."""
    ts = int(now)
    plain = {"_n": b64e(secrets.token_bytes(16)), "_appid": keys.appid, "_timestamp": ts, **payload}
    iv = secrets.token_bytes(12)
    sealed = AESGCM(keys.aes_key).encrypt(
        iv,
        json.dumps(plain, ensure_ascii=False, separators=(",", ":")).encode(),
        aad(urlpath, keys.appid, ts, keys.aes_sn),
    )
    body = json.dumps(
        {"iv": b64e(iv), "data": b64e(sealed[:-16]), "authtag": b64e(sealed[-16:])},
        separators=(",", ":"),
    ).encode()
    signature = platform.private_key.sign(
        signed_string(urlpath, keys.appid, ts, body), PSS, hashes.SHA256()
    )
    headers = {
        APPID_HEADER: keys.appid,
        TIMESTAMP_HEADER: str(ts),
        SERIAL_HEADER: platform.serial,
        SIGNATURE_HEADER: b64e(signature),
    }
    return headers, body
