"""Admin settings, from environment variables (the core Config has no admin section).

| variable | default | meaning |
|---|---|---|
| WATCHLLM_JWT_SECRET | generated, persisted in the store | HS256 secret, ≥ 32 bytes |
| WATCHLLM_JWT_ISSUER / WATCHLLM_JWT_AUDIENCE | watchllm / watchllm-admin | iss / aud claims |
| WATCHLLM_JWT_TTL / WATCHLLM_JWT_REFRESH_TTL | 900 / 604800 | access / refresh token lifetime, s |
| WATCHLLM_LOGIN_MAX_FAILURES | 5 | failed logins (per email) before lockout |
| WATCHLLM_LOGIN_WINDOW | 900 | seconds in which those failures count |
| WATCHLLM_LOGIN_LOCKOUT | 900 | seconds an account stays locked (423) |
| WATCHLLM_ADMIN_EMAIL / WATCHLLM_ADMIN_PASSWORD | unset | first-start bootstrap admin (only when no user exists) |
| WATCHLLM_MASTER_KEY / WATCHLLM_MASTER_KEYS_OLD | unset | provider-key encryption (gateway/crypto.py) |
| WATCHLLM_SCRYPT_N | 32768 | scrypt cost for new password hashes |
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

__all__ = ["AdminSettings"]


def _num(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}: expected a number, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{name}: must be > 0")
    return value


@dataclass(kw_only=True)
class AdminSettings:
    jwt_secret: str | None = None
    issuer: str = "watchllm"
    audience: str = "watchllm-admin"
    access_ttl: float = 900.0
    refresh_ttl: float = 7 * 86400.0
    leeway: float = 10.0
    max_failures: int = 5
    failure_window: float = 900.0
    lockout: float = 900.0
    scrypt_n: int = 2**15
    bootstrap_email: str | None = None
    bootstrap_password: str | None = None
    clock: Callable[[], float] = field(default=time.time)  # lockout clock; injectable in tests

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "AdminSettings":
        env = os.environ if env is None else env
        secret = env.get("WATCHLLM_JWT_SECRET") or None
        if secret is not None and len(secret.encode()) < 32:
            raise ValueError("WATCHLLM_JWT_SECRET: must be at least 32 bytes (HS256)")
        return cls(
            jwt_secret=secret,
            issuer=env.get("WATCHLLM_JWT_ISSUER") or "watchllm",
            audience=env.get("WATCHLLM_JWT_AUDIENCE") or "watchllm-admin",
            access_ttl=_num(env, "WATCHLLM_JWT_TTL", 900.0),
            refresh_ttl=_num(env, "WATCHLLM_JWT_REFRESH_TTL", 7 * 86400.0),
            max_failures=int(_num(env, "WATCHLLM_LOGIN_MAX_FAILURES", 5)),
            failure_window=_num(env, "WATCHLLM_LOGIN_WINDOW", 900.0),
            lockout=_num(env, "WATCHLLM_LOGIN_LOCKOUT", 900.0),
            scrypt_n=int(_num(env, "WATCHLLM_SCRYPT_N", 2**15)),
            bootstrap_email=env.get("WATCHLLM_ADMIN_EMAIL") or None,
            bootstrap_password=env.get("WATCHLLM_ADMIN_PASSWORD") or None,
        )
