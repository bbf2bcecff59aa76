"""auth: authenticate the project API key and set ``call.project`` / ``call.key``.

Keys come from ``Authorization: Bearer lgw_…`` or ``X-API-Key``. Missing, malformed,
unknown, wrong-secret, expired and revoked keys all get 401 ``invalid_api_key`` (the
last four with one identical body, so a key id cannot be probed).

Hot path: a verified lookup is cached in memory for ``cache_ttl`` seconds (default 1 s),
so a hit costs a regex match, a dict lookup and one SHA-256 with a constant-time
compare, and no SQL. That TTL is the bound on how long a key revoked by *another*
process stays usable; a revocation through this process's admin API also drops the
entry at once (``services.extras["auth.keys"].invalidate``). Unknown key ids are cached
negatively for the same TTL so garbage cannot turn into SQL load.

``last_used_at`` is collected in memory and written in one transaction every
``last_used_flush`` seconds (and at shutdown), never once per request.

Failed attempts are counted per client address and per key id in a fixed one-minute
window; past ``failures_per_minute`` the address (or key id) gets 429
``rate_limit_exceeded`` with ``Retry-After`` before any key is checked.

Test keys (``lgw_test_``) may only call model aliases whose every target (and fallback)
is a ``mock`` provider, and at most ``test_key_daily_requests`` requests per UTC day per
process; ``call.facts.extra["test_key"]`` is True for them.

A project's own provider keys (stored encrypted, see ``gateway/crypto.py``) are
decrypted on a cache miss and put in ``call.stash_get(PROVIDER_KEYS)`` as
``{provider instance name: api key}``; a provider uses that key instead of its
configured one. Never log or copy them into ``call.facts``.
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.call import ApiKeyInfo, Call, Project
from gateway.crypto import DecryptError, MasterKeyError, MasterKeys, hash_api_key, parse_api_key
from gateway.errors import GatewayError
from gateway.pipeline import Handler
from gateway.plugin import Services
from gateway.reply import Reply

__all__ = ["Auth", "AuthConfig", "PROVIDER_KEYS"]

log = logging.getLogger("watchllm.auth")
from gateway.call import PROVIDER_KEYS  # noqa: E402  (re-exported for plugins and tests)
_INVALID = "Invalid API key. Create one with `watchllm keys create --project NAME`."
_MISSING = "Missing API key: send `Authorization: Bearer lgw_...` or `X-API-Key`."


@dataclass(frozen=True, kw_only=True)
class AuthConfig:
    required: bool = field(default=True, metadata={"help": "false: requests without a key pass with call.project=None"})
    cache_ttl: float = field(default=1.0, metadata={"help": "seconds a key lookup is cached; bounds revocation delay across processes"})
    cache_size: int = 50_000
    failures_per_minute: int = field(default=20, metadata={"help": "failed attempts per client address / key id before 429"})
    last_used_flush: float = field(default=5.0, metadata={"help": "seconds between batched last_used_at writes"})
    test_key_daily_requests: int = field(default=200, metadata={"help": "requests per UTC day for an lgw_test_ key (per process)"})


@dataclass(slots=True)
class _Entry:
    expires: float
    secret_hash: bytes | None  # None: unknown key id (negative entry)
    project: Project | None = None
    key: ApiKeyInfo | None = None
    revoked: bool = False
    key_expires_at: float | None = None
    provider_keys: dict[str, str] | None = None


class _FailureWindow:
    """Failures per subject in a fixed 60 s window; bounded memory."""

    def __init__(self, limit: int, max_subjects: int = 100_000) -> None:
        self.limit, self.max_subjects = limit, max_subjects
        self._counts: dict[str, list[float]] = {}  # subject -> [window_start, count]

    def retry_after(self, subject: str, now: float) -> float:
        slot = self._counts.get(subject)
        if slot is None or now - slot[0] >= 60.0 or slot[1] < self.limit:
            return 0.0
        return 60.0 - (now - slot[0])

    def fail(self, subject: str, now: float) -> None:
        slot = self._counts.get(subject)
        if slot is None or now - slot[0] >= 60.0:
            if len(self._counts) >= self.max_subjects:
                self.prune(now)
                if len(self._counts) >= self.max_subjects:
                    self._counts.pop(next(iter(self._counts)))
            self._counts[subject] = [now, 1]
        else:
            slot[1] += 1

    def prune(self, now: float) -> None:
        for subject in [s for s, slot in self._counts.items() if now - slot[0] >= 60.0]:
            del self._counts[subject]


class Auth:
    Config = AuthConfig

    def __init__(self, config: AuthConfig | None, services: Services) -> None:
        self.cfg = config or AuthConfig()
        self.services = services
        self.clock = time.monotonic
        self.wall = time.time
        self._cache: dict[str, _Entry] = {}
        self._inflight: dict[str, asyncio.Future[_Entry]] = {}
        self._failures = _FailureWindow(self.cfg.failures_per_minute)
        self._last_used: dict[str, float] = {}
        self._test_usage: dict[str, tuple[int, int]] = {}  # key id -> (day, count)
        self._flusher: asyncio.Task[None] | None = None
        self._mock_aliases = _mock_only_aliases(services.config)
        self._master = MasterKeys.from_env()
        services.extras["auth.keys"] = self

    # lifecycle ----------------------------------------------------------------------
    async def startup(self) -> None:
        if self.services.store is None:
            raise RuntimeError("auth: no store is configured (store.url); API keys cannot be checked")
        self._flusher = asyncio.create_task(self._flush_loop(), name="auth-last-used")

    async def shutdown(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.flush()

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.last_used_flush)
            try:
                await self.flush()
                self._failures.prune(self.clock())
            except Exception:  # never let the flusher die; the next round retries
                log.exception("auth: last_used_at flush failed")

    async def flush(self) -> None:
        batch, self._last_used = self._last_used, {}
        if batch and self.services.store is not None:
            await self.services.store.api_keys.touch_many(batch)

    def invalidate(self, key_id: str | None = None) -> None:
        """Forget a cached key (all keys when None): the admin API calls this on revoke/delete."""
        if key_id is None:
            self._cache.clear()
        else:
            self._cache.pop(key_id, None)

    # the middleware -------------------------------------------------------------------
    async def __call__(self, call: Call, call_next: Handler) -> Reply:
        presented = _presented_key(call.headers)
        now = self.clock()
        ip = call.client_ip or "unknown"
        wait = self._failures.retry_after(ip, now)
        if wait:
            raise _too_many(wait)
        if presented is None:
            if not self.cfg.required:
                return await call_next(call)
            self._failures.fail(ip, now)
            raise GatewayError("invalid_api_key", _MISSING)
        parts = parse_api_key(presented)
        if parts is None:
            self._failures.fail(ip, now)
            raise GatewayError("invalid_api_key", _INVALID)
        wait = self._failures.retry_after("k:" + parts.key_id, now)
        if wait:
            raise _too_many(wait)
        entry = self._cache.get(parts.key_id)
        if entry is None or entry.expires <= now:
            entry = await self._load(parts.key_id)
        if (
            entry.secret_hash is None
            or not hmac.compare_digest(hash_api_key(presented), entry.secret_hash)
            or entry.revoked
            or (entry.key_expires_at is not None and entry.key_expires_at <= self.wall())
        ):
            self._failures.fail(ip, now)
            self._failures.fail("k:" + parts.key_id, now)
            raise GatewayError("invalid_api_key", _INVALID)
        assert entry.project is not None and entry.key is not None
        call.project = entry.project
        call.key = entry.key
        if entry.key.is_test:
            self._check_test_key(call, entry.key)
        if entry.provider_keys:
            call.stash_set(PROVIDER_KEYS, entry.provider_keys)
        self._last_used[entry.key.id] = call.created_at
        return await call_next(call)

    def _check_test_key(self, call: Call, key: ApiKeyInfo) -> None:
        call.facts.extra["test_key"] = True
        if call.model and call.model not in self._mock_aliases:
            raise GatewayError(
                "forbidden", "test keys (lgw_test_) may only use mock models",
                details={"allowed_models": sorted(self._mock_aliases)},
            )
        day = int(self.wall() // 86400)
        used_day, count = self._test_usage.get(key.id, (day, 0))
        count = count + 1 if used_day == day else 1
        if count > self.cfg.test_key_daily_requests:
            raise GatewayError("quota_exceeded", f"test key daily quota of {self.cfg.test_key_daily_requests} requests is used up")
        self._test_usage[key.id] = (day, count)

    # cache misses -----------------------------------------------------------------------
    async def _load(self, key_id: str) -> _Entry:
        """One store lookup per key id at a time (concurrent misses share it)."""
        pending = self._inflight.get(key_id)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[_Entry] = asyncio.get_running_loop().create_future()
        self._inflight[key_id] = fut
        try:
            entry = await self._fetch(key_id)
            fut.set_result(entry)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: waiters (if any) re-raise it
            raise
        finally:
            del self._inflight[key_id]
        if len(self._cache) >= self.cfg.cache_size:
            self._cache.pop(next(iter(self._cache)), None)
        self._cache.pop(key_id, None)
        self._cache[key_id] = entry
        return entry

    async def _fetch(self, key_id: str) -> _Entry:
        store = self.services.store
        if store is None:
            raise GatewayError("service_unavailable", "the key store is not available")
        expires = self.clock() + self.cfg.cache_ttl
        row = await store.api_keys.lookup(key_id)
        if row is None:
            return _Entry(expires, None)
        settings = orjson.loads(row["settings"] or "{}")
        project = Project(
            id=row["project_id"], name=row["project_name"], org_id=row["org_id"], plan=row["plan"],
            team_id=row["team_id"], settings=settings,
        )
        key = ApiKeyInfo(id=row["id"], project_id=row["project_id"], prefix=row["prefix"], is_test=bool(row["is_test"]))
        return _Entry(
            expires, bytes(row["secret_hash"]), project, key, revoked=row["revoked_at"] is not None,
            key_expires_at=row["expires_at"], provider_keys=await self._provider_keys(store, project.id),
        )

    async def _provider_keys(self, store: Any, project_id: str) -> dict[str, str] | None:
        sealed = await store.provider_keys.ciphertexts(project_id)
        if not sealed:
            return None
        if self._master is None:
            # Fail closed: silently falling back to the gateway's own provider key would bill the wrong account.
            raise GatewayError("service_unavailable", "this project's provider keys cannot be decrypted (WATCHLLM_MASTER_KEY is not set)")
        try:
            return {p: self._master.unseal(blob, project_id=project_id, provider=p) for p, blob in sealed.items()}
        except (DecryptError, MasterKeyError) as exc:
            log.error("auth: provider key of project %s cannot be decrypted: %s", project_id, exc)
            raise GatewayError("service_unavailable", "this project's provider keys cannot be decrypted") from None


def _presented_key(headers: Any) -> str | None:
    auth = headers.get("Authorization") or headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    key = headers.get("X-API-Key") or headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


def _too_many(wait: float) -> GatewayError:
    secs = max(1, int(wait + 0.999))
    return GatewayError("rate_limit_exceeded", "too many failed authentication attempts; retry later", headers={"Retry-After": str(secs)})


def _mock_only_aliases(config: Any) -> frozenset[str]:
    """Aliases whose every target, and every fallback alias's targets, are mock providers."""
    providers = getattr(config, "providers", {}) or {}
    models = getattr(config, "models", {}) or {}

    def is_mock(provider: str) -> bool:
        entry = providers.get(provider)
        return entry is not None and (entry.extra or {}).get("type", entry.name) == "mock"

    ok = {a for a, mc in models.items() if all(is_mock(t.provider) for t in mc.targets)}
    changed = True
    while changed:  # drop aliases that fall back to a non-mock alias
        changed = False
        for alias in list(ok):
            if any(fb not in ok for fb in (*models[alias].fallbacks, *models[alias].context_window_fallbacks)):
                ok.discard(alias)
                changed = True
    return frozenset(ok)
