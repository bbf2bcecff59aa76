"""Password hashing for admin users: ``hashlib.scrypt`` (memory-hard), parameters stored in the hash.

Format: ``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>``. Verification uses the stored
parameters, so raising ``n`` later only affects new hashes. Both functions are CPU-heavy
(tens of ms): call them through ``asyncio.to_thread`` from async code.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

__all__ = ["hash_password", "verify_password", "DUMMY_HASH", "MIN_PASSWORD_LENGTH"]

MIN_PASSWORD_LENGTH = 12
DEFAULT_N = 2**15  # 32 MiB with r=8: about 50-100 ms on this class of machine


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=128 * r * (n + p + 2) + (1 << 20), dklen=32)


def hash_password(password: str, *, n: int = DEFAULT_N, r: int = 8, p: int = 1) -> str:
    salt = secrets.token_bytes(16)
    digest = _derive(password, salt, n, r, p)
    return f"scrypt${n}${r}${p}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = _derive(password, base64.b64decode(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


# Verified against when the email is unknown, so timing does not reveal which accounts exist.
DUMMY_HASH = hash_password(secrets.token_urlsafe(16), n=2**14)
