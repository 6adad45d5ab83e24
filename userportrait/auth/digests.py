"""How credentials are kept: tokens as SHA-256 digests, secrets as scrypt hashes (one
set of parameters for app and platform secrets), compared in constant time by callers."""

from __future__ import annotations

import hashlib


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hash_secret(secret: str, salt: bytes) -> bytes:
    # scrypt n=2^14, r=8: ~16 MiB and tens of ms a check (auth/limits.py bounds how many).
    return hashlib.scrypt(secret.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
