"""What the translating providers (anthropic, gemini, ollama) share, written once.

Transport: config checks, error replies → ``ProviderError``, a project's own key, the
chat-only endpoints, and the guard around reading a streamed answer. Translation: OpenAI
request pieces (messages, content parts, images, tool calls and tools, sampling
parameters) and the OpenAI response envelopes (completion, choice, chunk, usage).
"""
from __future__ import annotations

import base64
import contextlib
import struct
import time
import uuid
from typing import Any, AsyncIterator, Callable, Iterable, Iterator, Mapping

import aiohttp
import orjson

from gateway.call import Call, Target
from gateway.chunks import usage_chunk
from gateway.errors import GatewayError, ProviderError, provider_error_from_status

# transport ---------------------------------------------------------------------------


def check_http_config(base_url: str, *positive: float, what: str = "timeouts") -> None:
    """A config's ``validate``: an http(s) base URL, and ``positive`` values (named ``what``) above zero."""
    if not base_url.startswith(("http://", "https://")):
        raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
    if min(positive) <= 0:
        raise ValueError(f"{what} must be positive")


def retry_after_header(headers: Mapping[str, str]) -> float | None:
    """The ``retry-after`` header in seconds, or None when absent or not a number."""
    value = headers.get("retry-after")
    try:
        return float(value) if value else None
    except ValueError:
        return None


def provider_error(status: int, provider: str, message: str, retry_after: float | None) -> ProviderError:
    """An upstream error status → ProviderError whose message says which provider answered."""
    exc = provider_error_from_status(status, f"{provider}: {message}", retry_after=retry_after)
    if not exc.message.startswith(provider):  # the core rewords credential failures; say whose
        exc.message = f"{provider}: {exc.message}"
    return exc


def with_project_key(headers: dict[str, str], header: str, call: Call | None, target: Target | None) -> dict[str, str]:
    """``headers`` with ``header`` set to the project's own key for the target's provider, when it has one."""
    override = call.provider_key(target.provider) if call is not None and target is not None else None
    return {**headers, header: override} if override else headers


def embedding_value(values: list[float], encoding: str | None) -> Any:
    if encoding == "base64":  # what the OpenAI SDKs ask for by default: little-endian float32
        return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
    return values


class ChatOnly:
    """The legacy completions endpoints of a provider whose API has chat only: a 400 that says so."""

    async def completions(self, body: dict[str, Any], target: Target, call: Call) -> dict[str, Any]:
        raise GatewayError("invalid_request", f"{target.provider} serves chat only: use /v1/chat/completions", param="prompt")

    async def completions_stream(self, body: dict[str, Any], target: Target, call: Call) -> AsyncIterator[dict[str, Any]]:
        raise GatewayError("invalid_request", f"{target.provider} serves chat only: use /v1/chat/completions", param="prompt")
        yield {}  # pragma: no cover - makes this an async generator


@contextlib.contextmanager
def reading_stream(resp: aiohttp.ClientResponse, provider: str, complete: Callable[[], bool]) -> Iterator[None]:
    """Around reading a streamed answer: a stall or a broken connection → ProviderError; at the
    end the response is released if ``complete()``, else closed (client gone or error: drop the
    upstream connection, do not drain it)."""
    try:
        yield
    except TimeoutError:
        raise ProviderError("provider_timeout", f"{provider}: stream stalled past the read timeout") from None
    except aiohttp.ClientError as exc:
        raise ProviderError("provider_error", f"{provider}: stream broke ({type(exc).__name__})") from None
    finally:
        if complete():
            resp.release()
        else:
            resp.close()


def stream_json(raw: str | bytes, provider: str, what: str = "event") -> Any:
    """One stream event or line as JSON, or a ProviderError naming it malformed."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ProviderError("provider_error", f"{provider}: malformed stream {what}") from None


# OpenAI requests ---------------------------------------------------------------------


def invalid(message: str, param: str | None = "messages") -> GatewayError:
    return GatewayError("invalid_request", message, param=param)


def chat_messages(body: Mapping[str, Any]) -> list[Any]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("messages must be a non-empty list")
    return messages


def require_one_choice(body: Mapping[str, Any], provider: str) -> None:
    if (body.get("n") or 1) != 1:
        raise invalid(f"{provider} returns one choice per request; n must be 1", "n")


def text_of(content: Any) -> str:
    """Message content as plain text: the text parts of a list, joined."""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, Mapping) and p.get("type") == "text")
    return "" if content is None else str(content)


def image_url_of(part: Mapping[str, Any]) -> str:
    """The URL of an ``image_url`` content part (an object with ``url``, or the bare URL)."""
    image = part.get("image_url")
    return str((image.get("url") if isinstance(image, Mapping) else image) or "")


def inline_image(part: Mapping[str, Any], provider: str) -> tuple[str, str]:
    """An ``image_url`` part that must be a base64 data: URL → (media type, base64 data)."""
    url = image_url_of(part)
    header, sep, data = url.partition(",")
    if not (url.startswith("data:") and sep and ";base64" in header):
        raise invalid(f"{provider} takes images inline: use a data:<media-type>;base64,<data> URL")
    return header[5:].split(";", 1)[0], data


def tool_call_arguments(tool_call: Mapping[str, Any]) -> Any:
    """An assistant tool call's ``arguments`` (a JSON string, or already parsed) as a value."""
    fn = tool_call.get("function") or {}
    raw = fn.get("arguments") or "{}"
    try:
        return orjson.loads(raw) if isinstance(raw, (str, bytes)) else raw
    except orjson.JSONDecodeError:
        raise invalid(f"tool call {tool_call.get('id')!r} has arguments that are not JSON") from None


def tool_functions(tools: Iterable[Any]) -> Iterator[Mapping[str, Any]]:
    """The ``function`` of each OpenAI tool, each checked to have a name."""
    for t in tools:
        fn = t.get("function") if isinstance(t, Mapping) else None
        if not isinstance(fn, Mapping) or not fn.get("name"):
            raise invalid("each tool must be {type: function, function: {name, parameters}}", "tools")
        yield fn


def sampling_params(body: Mapping[str, Any], names: Iterable[tuple[str, str]], *, max_tokens: str, stop: str) -> dict[str, Any]:
    """The request's sampling parameters under the upstream's names: ``names`` pairs (ours, theirs),
    then the token limit as ``max_tokens`` and the stop sequences (always a list) as ``stop``."""
    out: dict[str, Any] = {}
    for ours, theirs in names:
        if body.get(ours) is not None:
            out[theirs] = body[ours]
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if limit:
        out[max_tokens] = int(limit)
    sequences = body.get("stop")
    if sequences:
        out[stop] = [sequences] if isinstance(sequences, str) else list(sequences)
    return out


# OpenAI responses --------------------------------------------------------------------


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def new_completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def token_usage(prompt: int, completion: int) -> dict[str, Any]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def assistant_message(content: str | None, tool_calls: list[dict[str, Any]]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return message


def choice(index: int, message: dict[str, Any], finish_reason: str) -> dict[str, Any]:
    return {"index": index, "message": message, "finish_reason": finish_reason, "logprobs": None}


def chat_completion(cid: str, model: str, choices: list[dict[str, Any]], usage: dict[str, Any]) -> dict[str, Any]:
    created = int(time.time())
    return {"id": cid, "object": "chat.completion", "created": created, "model": model, "choices": choices, "usage": usage}


class ChunkStream:
    """The state every stream translator keeps for the chunk envelope: id, model, created, provider."""

    __slots__ = ("id", "model", "created", "provider")

    def __init__(self, *, cid: str, model: str, provider: str, created: int | None) -> None:
        self.id = cid
        self.model = model
        self.provider = provider
        self.created = created or int(time.time())

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None, *, index: int = 0) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": index, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
        }

    def _usage_chunk(self, usage: dict[str, Any]) -> dict[str, Any]:
        return usage_chunk(self.id, self.created, self.model, usage)
