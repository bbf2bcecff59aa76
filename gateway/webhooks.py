"""Webhook delivery: signed JSON POSTs, retried with exponential back-off, every attempt recorded.

Signature (verify it on the receiver)::

    X-WatchLLM-Timestamp: 1700000000
    X-WatchLLM-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}.".encode() + raw_body)>

The timestamp is inside the signed bytes, so a receiver that rejects timestamps older
than a few minutes cannot be fed a replayed body. ``X-WatchLLM-Event`` and
``X-WatchLLM-Delivery`` (stable across retries: de-duplicate on it) are informative.

SSRF: URLs must be http(s) without credentials; unless ``WATCHLLM_WEBHOOK_ALLOW_PRIVATE=1``
every address the host resolves to must be public (the rules of ``plugins/tools/ssrf.py``),
checked when the webhook is created *and* at each delivery, and the connection is pinned to
the checked address (no DNS-rebinding window). Redirects are not followed.

Deliveries live in ``webhook_deliveries`` (durable): a process that dies mid-retry leaves
a ``pending``/``sending`` row that any process picks up when it is due (the claim is a
lease). 2xx is delivered; 5xx, 408, 429 and network errors are retried after
``backoff * 2**(attempt-1)`` (±10 %, capped) up to ``max_attempts``; other statuses fail
at once.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import random
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from .crypto import DecryptError, MasterKeys

__all__ = ["sign", "verify", "check_webhook_url", "seal_secret", "open_secret", "new_secret", "Dispatcher",
           "DispatchSettings", "WebhookTargetError"]

log = logging.getLogger("watchllm.webhooks")
SIGNATURE_HEADER = "X-WatchLLM-Signature"
TIMESTAMP_HEADER = "X-WatchLLM-Timestamp"
_SECRET_AAD = "webhook-secret"


class WebhookTargetError(ValueError):
    """The webhook URL may not be used (scheme, credentials, or a non-public address)."""


def _env_bool(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        log.warning("webhooks: %s is not a number; using %s", name, default)
        return default


@dataclass(frozen=True)
class DispatchSettings:
    max_attempts: int = 5
    backoff_s: float = 2.0
    backoff_max_s: float = 300.0
    timeout_s: float = 10.0
    allow_private: bool = False
    lease_s: float = 60.0
    concurrency: int = 8

    @classmethod
    def from_env(cls) -> "DispatchSettings":
        return cls(
            max_attempts=max(1, int(_env_float("WATCHLLM_WEBHOOK_MAX_ATTEMPTS", 5))),
            backoff_s=max(0.001, _env_float("WATCHLLM_WEBHOOK_BACKOFF_S", 2.0)),
            backoff_max_s=max(0.001, _env_float("WATCHLLM_WEBHOOK_BACKOFF_MAX_S", 300.0)),
            timeout_s=max(0.1, _env_float("WATCHLLM_WEBHOOK_TIMEOUT_S", 10.0)),
            allow_private=_env_bool("WATCHLLM_WEBHOOK_ALLOW_PRIVATE"),
        )


# signing --------------------------------------------------------------------------
def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={mac}"


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, tolerance_s: float = 300, now: float | None = None) -> bool:
    """Receiver side: the signature matches and the timestamp is recent."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature)


def seal_secret(secret: str, hook_id: str) -> bytes:
    keys = MasterKeys.from_env()
    if keys is None:
        return b"raw:" + secret.encode()
    blob, _ = keys.seal(secret, project_id=hook_id, provider=_SECRET_AAD)
    return b"enc:" + blob


def open_secret(stored: bytes | None, hook_id: str) -> str:
    stored = bytes(stored or b"")
    if stored.startswith(b"raw:"):
        return stored[4:].decode()
    if stored.startswith(b"enc:"):
        keys = MasterKeys.from_env()
        if keys is None:
            raise DecryptError("webhook secret is sealed but WATCHLLM_MASTER_KEY is not set")
        return keys.unseal(stored[4:], project_id=hook_id, provider=_SECRET_AAD)
    raise DecryptError("unknown webhook secret format")


# SSRF -----------------------------------------------------------------------------
def _ssrf() -> Any:
    from plugins.tools import ssrf  # the one set of address rules (RELIABILITY.md §2)

    return ssrf


def check_webhook_url(url: str) -> tuple[str, str, int]:
    """Shape only (no DNS): http/https, no credentials, a host. Returns (scheme, host, port)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WebhookTargetError(f"malformed URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise WebhookTargetError("webhook URLs must be http or https")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise WebhookTargetError("credentials in the URL are not allowed")
    host = (parts.hostname or "").rstrip(".")
    if not host or any(c in host for c in "\\%\x00 ") or not host.isascii():
        raise WebhookTargetError("the URL needs a plain host name")
    return scheme, host, port or (443 if scheme == "https" else 80)


async def resolve_target(url: str, *, allow_private: bool) -> tuple[str, str | None]:
    """The URL to connect to and the host to send as Host/SNI (None: use the URL as is)."""
    scheme, host, port = check_webhook_url(url)
    if allow_private:
        return url, None
    ssrf = _ssrf()
    try:
        address = await ssrf.resolve_public(host, port, ssrf.system_resolver)
    except ssrf.BlockedTarget as exc:
        raise WebhookTargetError(f"{exc} (set WATCHLLM_WEBHOOK_ALLOW_PRIVATE=1 to allow private targets)") from None
    parts = urlsplit(url)
    netloc = (f"[{address}]" if ":" in address else address) + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, "")), host


# dispatcher -----------------------------------------------------------------------
class Dispatcher:
    """Sends due deliveries. ``kick()`` after queueing; ``run_once()`` is one pass (tests)."""

    def __init__(self, services: Any, settings: DispatchSettings | None = None) -> None:
        self.services = services
        self.settings = settings or DispatchSettings.from_env()
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._own_session: aiohttp.ClientSession | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._sem = asyncio.Semaphore(self.settings.concurrency)

    @property
    def store(self) -> Any:
        return self.services.store

    def _session(self) -> aiohttp.ClientSession:
        shared = getattr(self.services, "http", None)
        if shared is not None and not shared.closed:
            return shared
        if self._own_session is None or self._own_session.closed:
            self._own_session = aiohttp.ClientSession()
        return self._own_session

    def kick(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.create_task(self._run(), name="watchllm-webhooks")

    async def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for t in list(self._inflight):
            t.cancel()
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        if self._own_session is not None:
            await self._own_session.close()
            self._own_session = None

    async def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                await self.run_once()
                next_at = await self.store.webhooks.next_due_at()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhooks: dispatch pass failed")
                next_at = None
            wait = 5.0 if next_at is None else min(5.0, max(0.0, next_at - time.time()))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)

    async def run_once(self, now: float | None = None) -> int:
        """Start every due delivery; returns how many were claimed."""
        now = time.time() if now is None else now
        claimed = 0
        for d in await self.store.webhooks.due(now):
            if d["id"] in {t.get_name() for t in self._inflight}:
                continue
            if not await self.store.webhooks.claim(d["id"], now=now, lease_s=self.settings.lease_s):
                continue
            claimed += 1
            task = asyncio.create_task(self._deliver(d), name=d["id"])
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
        return claimed

    def _delay(self, attempt: int) -> float:
        base = min(self.settings.backoff_s * 2 ** (attempt - 1), self.settings.backoff_max_s)
        return base * random.uniform(0.9, 1.1)

    async def _deliver(self, d: dict[str, Any]) -> None:
        async with self._sem:
            attempt_no = int(d["attempts"]) + 1  # the claim incremented the stored count
            started = time.time()
            status_code: int | None = None
            error: str | None = None
            retry = False
            hook = await self.store.webhooks.target(d["webhook_id"])
            if hook is None or not hook["enabled"]:
                error = "webhook deleted or disabled"
            else:
                try:
                    status_code = await self._post(hook, d, attempt_no)
                    if 200 <= status_code < 300:
                        pass
                    else:
                        error = f"HTTP {status_code}"
                        retry = status_code >= 500 or status_code in (408, 429)
                except WebhookTargetError as exc:
                    error = f"blocked: {exc}"
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                    error = f"{type(exc).__name__}: {exc}"[:300] or type(exc).__name__
                    retry = True
                except DecryptError as exc:
                    error = f"secret: {exc}"
            finished = time.time()
            attempt = {"attempt": attempt_no, "status_code": status_code, "error": error, "started_at": started,
                       "finished_at": finished, "duration_ms": round((finished - started) * 1000, 2)}
            if error is None:
                status, next_at = "delivered", None
            elif retry and attempt_no < self.settings.max_attempts:
                status, next_at = "pending", finished + self._delay(attempt_no)
            else:
                status, next_at = "failed", None
            await self.store.webhooks.record_attempt(d["id"], attempt=attempt, status=status, next_attempt_at=next_at, now=finished)
            if status == "pending":
                self.kick()
            log.info("webhook delivery %s attempt %d: %s%s", d["id"], attempt_no, status, f" ({error})" if error else "")

    async def _post(self, hook: dict[str, Any], d: dict[str, Any], attempt_no: int) -> int:
        secret = open_secret(hook["secret"], hook["id"])
        body = d["payload"].encode()
        ts = int(time.time())
        url, host = await resolve_target(hook["url"], allow_private=self.settings.allow_private)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "WatchLLM-Webhook/1",
            "X-WatchLLM-Event": d["event"],
            "X-WatchLLM-Delivery": d["id"],
            "X-WatchLLM-Attempt": str(attempt_no),
            TIMESTAMP_HEADER: str(ts),
            SIGNATURE_HEADER: sign(secret, ts, body),
        }
        kwargs: dict[str, Any] = {}
        if host is not None:
            port = urlsplit(hook["url"]).port
            headers["Host"] = host + (f":{port}" if port else "")
            if url.startswith("https"):
                kwargs["server_hostname"] = host
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
        async with self._session().post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False, **kwargs) as resp:
            await resp.content.read(64 * 1024)  # drain a little; the body is not kept
            return resp.status
