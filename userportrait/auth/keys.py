"""The server key and the credentials derived from it, so that no database holds one.

``DATA_DIR/server.key`` (32 random bytes, 0600, made on first use) never leaves the data
directory. A stable access_token is ``HMAC-SHA512(key, appid, app salt, epoch)``: the
database keeps the epoch (a counter bumped for each new stable token) and the token's
SHA-256 digest, and ``stable_token`` derives the same token again from them. Someone who
can read ``meta.sqlite`` but not ``server.key`` learns no usable token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Final

from userportrait.store.sqlite import private_dir

KEY_FILE: Final = "server.key"
KEY_BYTES: Final = 32


def server_key(data_dir: Path) -> bytes:
    """The key in ``data_dir/server.key``, created (0600, atomically) if there is none."""
    path = private_dir(data_dir) / KEY_FILE
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
    else:
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(KEY_BYTES))
            f.flush()
            os.fsync(f.fileno())
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise RuntimeError(f"{path} is not a {KEY_BYTES}-byte key; remove it to make a new one")
    return key


def stable_token(key: bytes, appid: str, salt: bytes, epoch: int) -> str:
    """86 URL-safe characters (WeChat asks clients to keep 512 characters of room)."""
    message = b"stable_token\0" + appid.encode() + b"\0" + salt + b"\0" + str(epoch).encode()
    mac = hmac.new(key, message, hashlib.sha512).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
