"""OllamaProvider: the transport for Ollama's native API (``/api/chat``, ``/api/embed``, ``/api/tags``).

The native API, not Ollama's OpenAI-compatible ``/v1`` (for that, the ``openai`` provider
with ``base_url: http://localhost:11434/v1`` is enough): it streams NDJSON, reports token
counts on every answer and takes per-request ``options`` such as ``num_ctx``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Mapping

import orjson

from gateway.call import Call, Target
from gateway.errors import GatewayError, ProviderError
from gateway.plugin import Services
from gateway.upstream.sse import iter_ndjson_lines
from gateway.upstream.transport import JsonTransport

from .._common import (
    ChatOnly, check_http_config, embedding_value, provider_error, reading_stream, retry_after_header, stream_json,
)
from .stream import OllamaStream
from .translate import from_chat_response, to_chat_request

__all__ = ["OllamaProvider", "OllamaConfig", "error_from_response"]



@dataclass(frozen=True, kw_only=True)
class OllamaConfig:
    base_url: str = field(default="http://localhost:11434", metadata={"help": "scheme://host[:port], without /api"})
    api_key: str = field(default="", repr=False, metadata={"help": "optional Bearer token, for an Ollama behind an authenticating proxy"})
    timeout: float = field(default=600.0, metadata={"help": "total seconds for a non-streamed answer (model load included)"})
    connect_timeout: float = 10.0
    read_timeout: float = field(default=300.0, metadata={"help": "max seconds between two lines of a stream"})
    keep_alive: str | None = field(default=None, metadata={"help": "how long Ollama keeps the model loaded, e.g. 5m, -1"})
    options: dict[str, Any] = field(default_factory=dict, metadata={"help": "default model options, e.g. {num_ctx: 8192}"})
    headers: dict[str, str] = field(default_factory=dict)
    models: list[str] = field(default_factory=list, metadata={"help": "static model list; empty asks GET /api/tags"})

    def validate(self) -> None:
        check_http_config(self.base_url, self.timeout, self.connect_timeout, self.read_timeout)


def error_from_response(status: int, raw: bytes, headers: Mapping[str, str], provider: str) -> ProviderError:
    """An Ollama error (``{"error": "model \\"x\\" not found, try pulling it first"}``) → ProviderError."""
    message = raw.decode("utf-8", "replace")[:500] or f"HTTP {status}"
    try:
        parsed = orjson.loads(raw)
        if isinstance(parsed, dict) and parsed.get("error"):
            message = str(parsed["error"])[:500]
    except orjson.JSONDecodeError:
        pass
    return provider_error(status, provider, message, retry_after_header(headers))


class OllamaProvider(ChatOnly, JsonTransport):
    """OpenAI chat and embeddings ⇄ Ollama ``/api/chat`` (NDJSON) and ``/api/embed``."""

    NAME = "ollama"
    error_from_response = staticmethod(error_from_response)

    Config = OllamaConfig
    requires_api_key = False

    def __init__(self, config: OllamaConfig, services: Services) -> None:
        self.config = config
        self._services = services
        self._base = config.base_url.rstrip("/")
        self._headers = {"content-type": "application/json", **config.headers}
        if config.api_key:
            self._headers["authorization"] = f"Bearer {config.api_key}"

    # transport ------------------------------------------------------------------
    def _chat_request(self, body: dict[str, Any], target: Target, stream: bool) -> dict[str, Any]:
        return to_chat_request(body, model=target.model, stream=stream, defaults=self.config.options, keep_alive=self.config.keep_alive)

    def headers_for(self, call: Call | None, target: Target | None = None) -> dict[str, str]:
        return self._headers

    async def _json(self, method: str, path: str, payload: Any, *, target: Target | None, call: Call | None = None) -> Any:
        data = await super()._json(method, path, payload, target=target, call=call)
        if isinstance(data, dict) and data.get("error"):  # Ollama answers some failures with 200 {"error": ...}
            raise ProviderError("provider_error", f"{target.provider if target else self.NAME}: {data['error']}")
        return data

    # the Provider protocol ------------------------------------------------------
    async def chat(self, body: dict[str, Any], target: Target, call: Call) -> dict[str, Any]:
        resp = await self._json("POST", "/api/chat", self._chat_request(body, target, False), target=target)
        return from_chat_response(resp, model=target.model)

    async def chat_stream(self, body: dict[str, Any], target: Target, call: Call) -> AsyncIterator[dict[str, Any]]:
        resp = await self._open_stream("POST", "/api/chat", self._chat_request(body, target, True), target=target)
        translator = OllamaStream(model=target.model, provider=target.provider)
        with reading_stream(resp, target.provider, lambda: translator.finished):
            async for line in iter_ndjson_lines(resp):
                for chunk in translator.feed(stream_json(line, target.provider, "line")):
                    yield chunk
                if translator.finished:
                    break
            if not translator.finished:
                raise ProviderError("provider_error", f"{target.provider}: stream ended before done")

    async def embeddings(self, body: dict[str, Any], target: Target, call: Call) -> dict[str, Any]:
        texts = body.get("input")
        if not (isinstance(texts, str) or (isinstance(texts, list) and texts and all(isinstance(t, str) for t in texts))):
            raise GatewayError("invalid_request", "ollama embeds text: input must be a string or a list of strings", param="input")
        req: dict[str, Any] = {"model": target.model, "input": texts}
        if body.get("dimensions"):
            req["dimensions"] = int(body["dimensions"])
        if self.config.keep_alive is not None:
            req["keep_alive"] = self.config.keep_alive
        resp = await self._json("POST", "/api/embed", req, target=target)
        encoding = body.get("encoding_format")
        data = [
            {"object": "embedding", "index": i, "embedding": embedding_value(vec, encoding)}
            for i, vec in enumerate(resp.get("embeddings") or ())
        ]
        tokens = int(resp.get("prompt_eval_count") or 0)
        return {"object": "list", "data": data, "model": target.model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    async def list_models(self) -> list[str]:
        if self.config.models:
            return list(self.config.models)
        try:
            data = await self._json("GET", "/api/tags", None, target=None)
        except ProviderError:
            return []  # like the openai provider: an unreachable catalogue is an empty one
        return [str(m.get("name") or m.get("model")) for m in data.get("models") or () if isinstance(m, Mapping) and (m.get("name") or m.get("model"))]
