"""GeminiProvider: the transport for the Gemini API (generativelanguage.googleapis.com).

Chat goes to ``models/{model}:generateContent`` and ``:streamGenerateContent?alt=sse``,
embeddings to ``:batchEmbedContents``, the model list to ``GET models``. The key travels
in the ``x-goog-api-key`` header, never in the URL, so it cannot leak into access logs.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Mapping
from urllib.parse import quote

import orjson

from gateway.call import Call, Target
from gateway.errors import GatewayError, ProviderError
from gateway.plugin import Services
from gateway.upstream.sse import iter_sse
from gateway.upstream.transport import JsonTransport

from .._common import (
    ChatOnly, check_http_config, embedding_value, provider_error, reading_stream, retry_after_header, stream_json,
    with_project_key,
)
from .stream import GeminiStream
from .translate import from_generate_response, to_generate_request

__all__ = ["GeminiProvider", "GeminiConfig", "error_from_response"]



@dataclass(frozen=True, kw_only=True)
class GeminiConfig:
    api_key: str = field(default="", repr=False, metadata={"help": "sent as x-goog-api-key; use ${GEMINI_API_KEY}"})
    base_url: str = field(default="https://generativelanguage.googleapis.com", metadata={"help": "scheme://host[:port]"})
    api_version: str = field(default="v1beta", metadata={"help": "path segment before /models"})
    timeout: float = field(default=600.0, metadata={"help": "total seconds for a non-streamed answer"})
    connect_timeout: float = 10.0
    read_timeout: float = field(default=300.0, metadata={"help": "max seconds between two bytes of a stream"})
    headers: dict[str, str] = field(default_factory=dict)
    models: list[str] = field(default_factory=list, metadata={"help": "static model list; empty asks GET /models"})

    def validate(self) -> None:
        check_http_config(self.base_url, self.timeout, self.connect_timeout, self.read_timeout)


def _retry_delay(err: Mapping[str, Any], headers: Mapping[str, str]) -> float | None:
    for detail in err.get("details") or ():  # google.rpc.RetryInfo {"retryDelay": "37s"}
        match = re.fullmatch(r"([0-9.]+)s", str(detail.get("retryDelay", ""))) if isinstance(detail, Mapping) else None
        if match:
            return float(match.group(1))
    return retry_after_header(headers)


def error_from_response(status: int, raw: bytes, headers: Mapping[str, str], provider: str) -> ProviderError:
    """A Google API error (``{"error": {"code", "message", "status", "details"}}``) → ProviderError."""
    err: Mapping[str, Any] = {}
    try:
        parsed = orjson.loads(raw)
        if isinstance(parsed, list) and parsed:  # some proxies wrap it in a list
            parsed = parsed[0]
        err = parsed.get("error") or {} if isinstance(parsed, dict) else {}
    except orjson.JSONDecodeError:
        pass
    message = str(err.get("message") or raw.decode("utf-8", "replace")[:500] or f"HTTP {status}")
    if status == 400 and ("API_KEY_INVALID" in raw.decode("utf-8", "replace") or "API key not valid" in message):
        status = 401  # Gemini says 400 for a bad key; it is the gateway's credentials, not the client's request
    exc = provider_error(status, provider, message, _retry_delay(err, headers))
    if status == 400 and "exceeds the maximum number of tokens" in message:
        exc.context_window = True
    if err.get("status"):
        exc.details = {"upstream_status": err["status"]}
    return exc


class GeminiProvider(ChatOnly, JsonTransport):
    """OpenAI chat and embeddings ⇄ Gemini generateContent / batchEmbedContents."""

    NAME = "gemini"
    error_from_response = staticmethod(error_from_response)

    Config = GeminiConfig
    requires_api_key = True

    def __init__(self, config: GeminiConfig, services: Services) -> None:
        self.config = config
        self._services = services
        self._base = f"{config.base_url.rstrip('/')}/{config.api_version}"
        self._headers = {"x-goog-api-key": config.api_key, "content-type": "application/json", **config.headers}

    # transport ------------------------------------------------------------------
    def headers_for(self, call: Call | None, target: Target | None = None) -> dict[str, str]:
        return with_project_key(self._headers, "x-goog-api-key", call, target)

    @staticmethod
    def _model_path(model: str) -> str:
        return "/models/" + quote(model.removeprefix("models/"), safe="-._")

    # the Provider protocol ------------------------------------------------------
    async def chat(self, body: dict[str, Any], target: Target, call: Call) -> dict[str, Any]:
        path = self._model_path(target.model) + ":generateContent"
        resp = await self._json("POST", path, to_generate_request(body), call=call, target=target)
        return from_generate_response(resp, model=target.model)

    async def chat_stream(self, body: dict[str, Any], target: Target, call: Call) -> AsyncIterator[dict[str, Any]]:
        path = self._model_path(target.model) + ":streamGenerateContent?alt=sse"
        resp = await self._open_stream("POST", path, to_generate_request(body), call=call, target=target)
        translator = GeminiStream(model=target.model, provider=target.provider)
        ended = False
        with reading_stream(resp, target.provider, lambda: ended):
            async for event in iter_sse(resp):
                for chunk in translator.feed(stream_json(event.data, target.provider)):
                    yield chunk
            ended = True
            for chunk in translator.finish():
                yield chunk

    async def embeddings(self, body: dict[str, Any], target: Target, call: Call) -> dict[str, Any]:
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise GatewayError("invalid_request", "gemini embeds text: input must be a string or a list of strings", param="input")
        model = "models/" + target.model.removeprefix("models/")
        requests = []
        for text in texts:
            req: dict[str, Any] = {"model": model, "content": {"parts": [{"text": text}]}}
            if body.get("dimensions"):
                req["outputDimensionality"] = int(body["dimensions"])
            requests.append(req)
        path = self._model_path(target.model) + ":batchEmbedContents"
        resp = await self._json("POST", path, {"requests": requests}, call=call, target=target)
        encoding = body.get("encoding_format")
        data = [
            {"object": "embedding", "index": i, "embedding": embedding_value(e.get("values") or [], encoding)}
            for i, e in enumerate(resp.get("embeddings") or ())
        ]
        # batchEmbedContents reports no token counts; zero says "not reported", not "free".
        return {"object": "list", "data": data, "model": target.model, "usage": {"prompt_tokens": 0, "total_tokens": 0}}

    async def list_models(self) -> list[str]:
        if self.config.models:
            return list(self.config.models)
        names: list[str] = []
        token = ""
        for _ in range(20):  # pages of 1000; a bound, not a loop forever on a misbehaving proxy
            query = "?pageSize=1000" + (f"&pageToken={quote(token)}" if token else "")
            try:
                data = await self._json("GET", "/models" + query, None, call=None, target=None)
            except ProviderError:
                return names  # like the openai provider: an unreachable catalogue is an empty one
            for m in data.get("models") or ():
                methods = m.get("supportedGenerationMethods") or ["generateContent"]
                if m.get("name") and ({"generateContent", "embedContent"} & set(methods)):
                    names.append(str(m["name"]).removeprefix("models/"))
            token = data.get("nextPageToken") or ""
            if not token:
                break
        return names
