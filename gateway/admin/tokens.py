"""Admin JWTs: HS256 only, every registered claim required and checked, a jti denylist.

Why so strict: PyJWT accepts a token without ``exp`` under its default options
(RELIABILITY.md §0.5), so ``require`` lists every claim; the algorithm is pinned and never
read from the token; the secret is ≥ 32 bytes and ``enforce_minimum_key_length`` is on.
"""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt

__all__ = ["TokenService", "TokenError", "ALGORITHM"]

ALGORITHM = "HS256"
REQUIRED = ["exp", "iat", "aud", "iss", "sub", "jti"]


class TokenError(Exception):
    """Any invalid token. The message is for logs; clients get one generic 401."""


@dataclass
class TokenService:
    secret: str
    issuer: str
    audience: str
    access_ttl: float = 900.0
    refresh_ttl: float = 7 * 86400.0
    leeway: float = 10.0

    def __post_init__(self) -> None:
        if len(self.secret.encode()) < 32:
            raise ValueError("JWT secret must be at least 32 bytes")
        if not 0 <= self.leeway <= 30:
            raise ValueError("JWT leeway must be between 0 and 30 s")

    def issue(self, *, user_id: str, org_id: str, role: str, typ: str = "access", now: float | None = None) -> tuple[str, dict[str, Any]]:
        now = time.time() if now is None else now
        ttl = self.access_ttl if typ == "access" else self.refresh_ttl
        claims = {
            "iss": self.issuer, "aud": self.audience, "sub": user_id, "org": org_id, "role": role, "typ": typ,
            "jti": secrets.token_urlsafe(16), "iat": int(now), "exp": int(now + ttl),
        }
        return jwt.encode(claims, self.secret, algorithm=ALGORITHM), claims

    def decode(self, token: str, *, typ: str = "access") -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") != ALGORITHM:
                raise TokenError("unexpected algorithm")
            claims = jwt.decode(
                token, self.secret, algorithms=[ALGORITHM], audience=self.audience, issuer=self.issuer, leeway=self.leeway,
                options={"require": REQUIRED, "strict_aud": True, "enforce_minimum_key_length": True},
            )
        except jwt.PyJWTError as exc:
            raise TokenError(type(exc).__name__) from None
        if claims.get("typ") != typ or not isinstance(claims.get("org"), str):
            raise TokenError("wrong token type")
        return claims
