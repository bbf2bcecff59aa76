"""AnthropicProvider: the transport for Anthropic's Messages API.

Translation lives in ``translate.py`` (JSON) and ``stream.py`` (SSE events); this file
only sends requests on the shared pooled session, maps failures to ``ProviderError``
and makes sure an upstream response is released however its consumer stops.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Mapping

import orjson

from gateway.call import Call, Target
from gateway.errors import GatewayError, ProviderError
from gateway.plugin import Services
from gateway.upstream.sse import iter_sse
from gateway.upstream.transport import JsonTransport

from .._common import (
    ChatOnly, check_http_config, provider_error, reading_stream, retry_after_header, stream_json, with_project_key,
)
from .stream import AnthropicStream
from .translate import from_messages_response, to_messages_request

__all__ = ["AnthropicProvider", "AnthropicConfig", "error_from_response"]



@dataclass(frozen=True, kw_only=True)
class AnthropicConfig:
    api_key: str = field(default="", repr=False, metadata={"help": "sent as x-api-key; use ${ANTHROPIC_API_KEY}"})
    base_url: str = field(default="https://api.anthropic.com", metadata={"help": "scheme://host[:port], without /v1"})
    version: str = field(default="2023-06-01", metadata={"help": "the anthropic-version header"})
    timeout: float = field(default=600.0, metadata={"help": "total seconds for a non-streamed answer"})
    connect_timeout: float = 10.0
    read_timeout: float = field(default=300.0, metadata={"help": "max seconds between two bytes of a stream"})
    max_tokens: int = field(default=4096, metadata={"help": "max_tokens when the client sends none (Anthropic requires it)"})
    headers: dict[str, str] = field(default_factory=dict, metadata={"help": "extra headers, e.g. anthropic-beta"})
    models: list[str] = field(default_factory=list, metadata={"help": "static model list; empty asks GET /v1/models"})

    def validate(self) -> None:
        check_http_config(
            self.base_url, self.timeout, self.connect_timeout, self.read_timeout, self.max_tokens, what="timeouts and max_tokens"
        )


def error_from_response(status: int, raw: bytes, headers: Mapping[str, str], provider: str) -> ProviderError:
    """An Anthropic error reply (``{"type": "error", "error": {"type", "message"}}``) → ProviderError."""
    message, kind = raw.decode("utf-8", "replace")[:500], None
    try:
        err = orjson.loads(raw).get("error") or {}
        message, kind = err.get("message") or message, err.get("type")
    except (orjson.JSONDecodeError, AttributeError):
        pass
    exc = provider_error(status, provider, message, retry_after_header(headers))
    if status == 400 and "prompt is too long" in message.lower():
        exc.context_window = True
    if kind:
        exc.details = {"upstream_type": kind}
    return exc


class AnthropicProvider(ChatOnly, JsonTransport):
    """OpenAI chat ⇄ Anthropic Messages (``POST /v1/messages``), JSON and SSE."""

    NAME = "anthropic"
    error_from_response = staticmethod(error_from_response)

    Config = AnthropicConfig
    requires_api_key = True

    def __init__(self, config: AnthropicConfig, services: Services) -> None:
        self.config = config
        self._services = services
        self._base = config.base_url.rstrip("/")
        self._headers = {
            "x-api-key": config.api_key,
            "anthropic-version": config.version,
            "content-type": "application/json",
            "accept": "application/json",
            **config.headers,
        }

    # transport ------------------------------------------------------------------
    def headers_for(self, call: Call | None, target: Target | None = None) -> dict[str, str]:
        return with_project_key(self._headers, "x-api-key", call, target)

    # the Provider protocol ------------------------------------------------------
    async def chat(self, body: dict[str, Any], target: Target, call: Call) -> dict[str, Any]:
        req = to_messages_request(body, model=target.model, default_max_tokens=self.config.max_tokens, stream=False)
        resp = await self._json("POST", "/v1/messages", req, call=call, target=target)
        return from_messages_response(resp, model=target.model)

    async def chat_stream(self, body: dict[str, Any], target: Target, call: Call) -> AsyncIterator[dict[str, Any]]:
        req = to_messages_request(body, model=target.model, default_max_tokens=self.config.max_tokens, stream=True)
        resp = await self._open_stream("POST", "/v1/messages", req, call=call, target=target)
        translator = AnthropicStream(model=target.model, provider=target.provider)
        with reading_stream(resp, target.provider, lambda: translator.finished):
            async for event in iter_sse(resp):
                for chunk in translator.feed(event.event, stream_json(event.data, target.provider)):
                    yield chunk
                if translator.finished:
                    break
            if not translator.finished:
                raise ProviderError("provider_error", f"{target.provider}: stream ended before message_stop")

    async def embeddings(self, body: dict[str, Any], target: Target, call: Call) -> dict[str, Any]:
        raise GatewayError("invalid_request", "anthropic has no embeddings API", param="model")

    async def list_models(self) -> list[str]:
        if self.config.models:
            return list(self.config.models)
        try:
            data = await self._json("GET", "/v1/models?limit=1000", None, call=None, target=None)
        except ProviderError:
            return []  # like the openai provider: an unreachable catalogue is an empty one
        return [m["id"] for m in data.get("data") or () if isinstance(m, Mapping) and m.get("id")]
