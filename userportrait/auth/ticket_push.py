"""WeChat's push of the ``component_verify_ticket`` to a platform's callback URL (optional).

WeChat POSTs the ticket every 10 minutes to the platform's 授权事件接收 URL as a message
encrypted the way WeChat encrypts callback messages: AES-256-CBC with the platform's
EncodingAESKey (IV = the key's first 16 bytes) over random 16 bytes + length + XML +
appid, PKCS#7-padded to 32 bytes; ``msg_signature`` = SHA-1 of the sorted token,
timestamp, nonce and ciphertext. Platforms that set a callback (``component callback``)
get the same here; everyone else asks the CLI (``component ticket``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import secrets
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from userportrait.errors import InvalidRequest

log = logging.getLogger("userportrait.component")


@dataclass(frozen=True, slots=True)
class Callback:
    component_appid: str
    url: str
    token: str
    encoding_aes_key: str


def aes_key(encoding_aes_key: str) -> bytes:
    """The 32-byte key of a 43-character EncodingAESKey."""
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(encoding_aes_key) != 43 or len(key) != 32:
        raise InvalidRequest("EncodingAESKey: 43 characters of base64 (a 32-byte key)")
    return key


def sha1_signature(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def seal(callback: Callback, xml: str, timestamp: str, nonce: str) -> tuple[dict[str, str], str]:
    """Query parameters and body of one pushed message, as WeChat sends them."""
    key = aes_key(callback.encoding_aes_key)
    message = xml.encode()
    plain = secrets.token_bytes(16) + struct.pack(">I", len(message)) + message
    plain += callback.component_appid.encode()
    padder = padding.PKCS7(256).padder()  # WeChat pads to 32-byte blocks
    padded = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    encrypt = base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode()
    params = {
        "signature": sha1_signature(callback.token, timestamp, nonce),
        "timestamp": timestamp,
        "nonce": nonce,
        "encrypt_type": "aes",
        "msg_signature": sha1_signature(callback.token, timestamp, nonce, encrypt),
    }
    body = (
        f"<xml><AppId><![CDATA[{callback.component_appid}]]></AppId>"
        f"<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    )
    return params, body


def ticket_xml(component_appid: str, ticket: str, now: float) -> str:
    return (
        f"<xml><AppId><![CDATA[{component_appid}]]></AppId><CreateTime>{int(now)}</CreateTime>"
        "<InfoType><![CDATA[component_verify_ticket]]></InfoType>"
        f"<ComponentVerifyTicket><![CDATA[{ticket}]]></ComponentVerifyTicket></xml>"
    )


async def push(client: httpx.AsyncClient, callback: Callback, ticket: str) -> bool:
    """One push; True when the platform answered ``success`` (WeChat's expected reply)."""
    now = time.time()
    params, body = seal(
        callback,
        ticket_xml(callback.component_appid, ticket, now),
        str(int(now)),
        secrets.token_hex(5),
    )
    try:
        res = await client.post(callback.url, params=params, content=body.encode())
    except httpx.HTTPError as exc:
        log.warning("ticket push to %s failed: %s", callback.url, exc)
        return False
    if res.status_code != 200 or res.text.strip() != "success":
        log.warning("ticket push to %s: HTTP %s %r", callback.url, res.status_code, res.text[:80])
        return False
    return True


async def push_loop(
    callbacks: Callable[[], list[Callback]], ticket: Callable[[str], str], interval_s: float
) -> None:
    """Push each platform's current ticket now and every ``interval_s`` (WeChat: 600 s)."""
    async with httpx.AsyncClient(timeout=10) as client:
        while True:
            try:
                for callback in await asyncio.to_thread(callbacks):
                    current = await asyncio.to_thread(ticket, callback.component_appid)
                    await push(client, callback, current)
            except Exception:  # a bad row or a busy file must not end the pushes
                log.exception("ticket push round failed")
            await asyncio.sleep(interval_s)
