"""The ``openai`` provider: any OpenAI-compatible API (OpenAI, Groq, OpenRouter, DeepSeek,
Together, vLLM, LM Studio). Bodies pass through with ``model`` set to the target's.

Non-streamed calls go through the lean keep-alive client (``services.upstream``,
gateway/upstream/h1.py), streams through the pooled aiohttp session (``services.http``); per-target
timeouts; streams are relayed event by event. The client's own headers (its
Authorization above all) are never forwarded. When the client closes a stream,
the upstream response is closed, not drained.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Mapping

import aiohttp
import orjson

from gateway.call import Call, Target
from gateway.errors import ProviderError, provider_error_from_status
from gateway.plugin import Services
from gateway.upstream.transport import MAX_ERROR_BODY, request_upstream
from gateway.upstream.sse import iter_sse



@dataclass(frozen=True, kw_only=True)
class OpenAIConfig:
    base_url: str = "https://api.openai.com/v1"
    api_key: str = ""
    timeout: float = field(default=600.0, metadata={"help": "total seconds for a non-streamed answer"})
    connect_timeout: float = 10.0
    read_timeout: float = field(default=300.0, metadata={"help": "max seconds between two bytes of a stream"})
    organization: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    stream_usage: bool = field(default=True, metadata={"help": "ask upstream for the usage chunk (for costs)"})
    models: list[str] = field(default_factory=list)

    def validate(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after-ms")
    if value:
        try:
            return float(value) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value:
        try:
            return float(value)
        except ValueError:
            return None
    return None


def upstream_error(status: int, raw: bytes, headers: Mapping[str, str]) -> ProviderError:
    """An upstream error status as a ProviderError carrying the upstream's message."""
    message = f"upstream returned HTTP {status}"
    try:
        data = orjson.loads(raw[:MAX_ERROR_BODY])
        err = data.get("error") if isinstance(data, dict) else None
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            message = err["message"][:500]
        elif isinstance(err, str):
            message = err[:500]
    except orjson.JSONDecodeError:
        pass
    return provider_error_from_status(status, message, retry_after=_retry_after(headers))


async def raise_for_upstream(resp: aiohttp.ClientResponse) -> None:
    raise upstream_error(resp.status, await resp.content.read(MAX_ERROR_BODY), resp.headers)


class OpenAIProvider:
    Config = OpenAIConfig
    requires_api_key = True

    def __init__(self, config: OpenAIConfig, services: Services) -> None:
        self.cfg = config
        self.services = services
        self.base = config.base_url.rstrip("/")
        h = {"Content-Type": "application/json", **config.headers}
        if config.api_key:
            h["Authorization"] = f"Bearer {config.api_key}"
        if config.organization:
            h["OpenAI-Organization"] = config.organization
        self._headers = h

    def _session(self) -> aiohttp.ClientSession:
        if self.services.http is None:
            raise ProviderError("service_unavailable", "gateway HTTP client is not started", status=503)
        return self.services.http

    def _stream_timeout(self, target: Target) -> aiohttp.ClientTimeout:
        """A live stream may last long: cap the gaps and the wait for headers, not the total."""
        total = target.timeout or self.cfg.timeout
        return aiohttp.ClientTimeout(total=None, connect=self.cfg.connect_timeout, sock_read=min(self.cfg.read_timeout, total))

    def headers_for(self, call: Call, target: Target) -> dict[str, str]:
        override = call.provider_key(target.provider)  # a project's own key (tenancy)
        if override:
            return {**self._headers, "Authorization": f"Bearer {override}"}
        return self._headers

    async def _post(self, path: str, body: dict[str, Any], target: Target, call: Call) -> dict[str, Any]:
        # The lean keep-alive client (gateway/upstream/h1.py): ~200 µs of CPU less per call than aiohttp.
        resp = await request_upstream(
            self.services, "POST", f"{self.base}{path}", name=target.name, headers=self.headers_for(call, target),
            body=orjson.dumps(body), timeout=target.timeout or self.cfg.timeout, connect_timeout=self.cfg.connect_timeout)
        if resp.status >= 400:
            raise upstream_error(resp.status, resp.body, resp.headers)
        try:
            data = orjson.loads(resp.body)
        except orjson.JSONDecodeError:
            # nothing reached the client yet: like a 502 from the upstream, safe to retry or fall back
            raise ProviderError("provider_error", f"{target.provider} returned invalid JSON", retryable=True) from None
        if not isinstance(data, dict) or ("error" in data and "choices" not in data and "data" not in data):
            raise ProviderError("provider_error", f"{target.provider} returned an error body with status 200", retryable=True)
        return data

    async def _stream(self, path: str, body: dict[str, Any], target: Target, call: Call) -> AsyncIterator[dict[str, Any]]:
        if self.cfg.stream_usage and path == "/chat/completions":
            body = {**body, "stream_options": {**(body.get("stream_options") or {}), "include_usage": True}}
        try:
            resp = await self._session().post(
                f"{self.base}{path}", data=orjson.dumps(body), headers=self.headers_for(call, target),
                timeout=self._stream_timeout(target), allow_redirects=False,
            )
        except asyncio.TimeoutError:
            raise ProviderError("provider_timeout", f"{target.name} did not answer in time", retryable=True) from None
        except aiohttp.ClientError as exc:
            raise ProviderError("provider_error", f"cannot reach {target.provider}: {type(exc).__name__}", retryable=True) from None
        done = False
        try:
            if resp.status >= 400:
                await raise_for_upstream(resp)
            async for event in iter_sse(resp):
                if event.data == "[DONE]":
                    done = True
                    break
                try:
                    chunk = orjson.loads(event.data)
                except orjson.JSONDecodeError:
                    raise ProviderError("provider_error", f"{target.provider} sent an invalid stream event") from None
                if isinstance(chunk, dict) and "error" in chunk and "choices" not in chunk:
                    err = chunk["error"]
                    msg = err.get("message") if isinstance(err, dict) else str(err)
                    raise ProviderError("provider_error", f"{target.provider} stream error: {str(msg)[:300]}")
                yield chunk
            else:
                raise ProviderError("provider_error", f"{target.provider} stream ended without [DONE]")
        except asyncio.TimeoutError:
            raise ProviderError("provider_timeout", f"{target.name} stream stalled", retryable=False) from None
        except aiohttp.ClientError as exc:
            raise ProviderError("provider_error", f"{target.provider} stream broke: {type(exc).__name__}") from None
        finally:
            if done:
                resp.release()
            else:
                resp.close()  # client gone or error: drop the upstream connection, do not drain it

    # Provider contract ------------------------------------------------------------------
    async def chat(self, body: dict[str, Any], target: Target, call: Call) -> dict[str, Any]:
        return await self._post("/chat/completions", body, target, call)

    def chat_stream(self, body: dict[str, Any], target: Target, call: Call) -> AsyncIterator[dict[str, Any]]:
        return self._stream("/chat/completions", body, target, call)

    async def completions(self, body: dict[str, Any], target: Target, call: Call) -> dict[str, Any]:
        return await self._post("/completions", body, target, call)

    def completions_stream(self, body: dict[str, Any], target: Target, call: Call) -> AsyncIterator[dict[str, Any]]:
        return self._stream("/completions", body, target, call)

    async def embeddings(self, body: dict[str, Any], target: Target, call: Call) -> dict[str, Any]:
        return await self._post("/embeddings", body, target, call)

    async def list_models(self) -> list[str]:
        if self.cfg.models:
            return list(self.cfg.models)
        try:
            async with self._session().get(f"{self.base}/models", headers=self._headers, timeout=aiohttp.ClientTimeout(total=10)) as resp:
                if resp.status >= 400:
                    return []
                data = orjson.loads(await resp.read())
        except (aiohttp.ClientError, asyncio.TimeoutError, orjson.JSONDecodeError):
            return []
        return [m.get("id") for m in data.get("data", []) if isinstance(m, dict) and m.get("id")]
