"""Call: one proxied request, parsed once and handed down the middleware chain.

A Call is created by the HTTP layer after the body is parsed (once, with orjson).
Middlewares read and edit it before ``call_next``; later layers may rely on what
earlier ones set (``project`` and ``key`` are set by ``auth``; ``served`` by the router).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from collections.abc import Mapping as _AbcMapping
from typing import Any, Generic, Mapping, TypeVar

__all__ = ["Call", "Endpoint", "Project", "ApiKeyInfo", "Target", "Usage", "StashKey", "UsageFacts", "PROVIDER_KEYS", "is_mapping"]

T = TypeVar("T")


class StashKey(Generic[T]):
    """A typed key for per-call state shared between layers (like pytest's StashKey)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"StashKey({self.name!r})"


# A project's own provider credentials (provider instance name → plaintext key), set by `auth`
# for the request's lifetime only. Never copied into facts, logs or usage records.
PROVIDER_KEYS: "StashKey[dict[str, str]]"


class Endpoint:
    CHAT = "chat.completions"
    COMPLETIONS = "completions"
    EMBEDDINGS = "embeddings"


@dataclass(slots=True)
class Project:
    """The tenant a request belongs to. Every cache key, counter and log row is scoped by ``id``."""

    id: str
    name: str = ""
    org_id: str = ""
    plan: str = "free"
    team_id: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ApiKeyInfo:
    id: str
    project_id: str
    prefix: str = ""
    is_test: bool = False


@dataclass(slots=True, frozen=True)
class Target:
    """One concrete upstream: a provider instance name (config ``providers:`` key) and its model."""

    provider: str
    model: str
    weight: float = 1.0
    timeout: float | None = None
    max_in_flight: int | None = None
    rpm: int | None = None

    @property
    def name(self) -> str:
        return f"{self.provider}/{self.model}"


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    estimated: bool = False  # True when counted locally because the provider reported none

    @classmethod
    def from_openai(cls, data: Mapping[str, Any] | None) -> "Usage | None":
        if not data:
            return None
        prompt = int(data.get("prompt_tokens") or 0)
        completion = int(data.get("completion_tokens") or 0)
        details = data.get("prompt_tokens_details") or {}
        return cls(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=int(data.get("total_tokens") or prompt + completion),
            cached_tokens=int(details.get("cached_tokens") or 0) if is_mapping(details) else 0,
        )


@dataclass(slots=True)
class UsageFacts:
    """What the layers learned about a call, for the usage record, metrics and headers.

    Layers fill it as they go; the HTTP layer reads it when the response completes.
    """

    provider: str | None = None
    model_served: str | None = None
    attempts: int = 0
    cached: str | None = None  # None | "exact" | "semantic"
    tokens_saved: int = 0
    cost_saved_micros: int = 0
    dlp_findings: dict[str, int] = field(default_factory=dict)
    ttft_ms: float | None = None
    upstream_ms: float | None = None
    tool_rounds: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Call:
    """One proxied request.

    ``body`` is the parsed OpenAI request and may be edited before ``call_next``
    (DLP masks it, the router swaps ``model``). ``model`` is the alias the client asked for.
    ``reply_headers`` are stamped on whatever leaves, short-circuit replies included.
    """

    id: str
    endpoint: str
    body: dict[str, Any]
    headers: Mapping[str, str]
    client_ip: str = ""
    project: Project | None = None
    key: ApiKeyInfo | None = None
    reply_headers: dict[str, str] = field(default_factory=dict)
    client_include_usage: bool = False  # the client asked for the usage chunk (stream_options)
    facts: UsageFacts = field(default_factory=UsageFacts)
    started: float = field(default_factory=time.perf_counter)
    created_at: float = field(default_factory=time.time)
    _stash: dict[StashKey[Any], Any] = field(default_factory=dict)

    @property
    def model(self) -> str:
        return str(self.body.get("model") or "")

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def project_id(self) -> str:
        return self.project.id if self.project else "anonymous"

    # typed per-call state -------------------------------------------------------
    def stash_get(self, key: StashKey[T], default: T | None = None) -> T | None:
        return self._stash.get(key, default)

    def stash_set(self, key: StashKey[T], value: T) -> None:
        self._stash[key] = value

    def provider_key(self, provider: str) -> str | None:
        """The project's own key for a provider instance (config ``providers:`` name), if it stored one."""
        keys = self._stash.get(PROVIDER_KEYS)
        return keys.get(provider) if keys else None

    def prompt_text(self) -> str:
        """All text the client sent as prompt (messages, prompt, input), joined by newlines."""
        return "\n".join(iter_prompt_texts(self.body))


PROVIDER_KEYS = StashKey("provider_keys")


def is_mapping(obj: Any) -> bool:
    """``isinstance(obj, Mapping)`` with a fast path for ``dict`` (what orjson gives): typing's
    and the ABC's instance checks cost ~0.4-0.7 µs each, several times per request. For plugins
    walking a parsed request body."""
    return type(obj) is dict or isinstance(obj, _AbcMapping)


def iter_prompt_texts(body: Mapping[str, Any]):
    """Yield every text part of an OpenAI request body (messages, content parts, prompt, input)."""
    messages = body.get("messages")
    if isinstance(messages, list):
        for m in messages:
            if not is_mapping(m):
                continue
            content = m.get("content")
            if isinstance(content, str):
                yield content
            elif isinstance(content, list):
                for part in content:
                    if is_mapping(part) and isinstance(part.get("text"), str):
                        yield part["text"]
            for tc in m.get("tool_calls") or ():
                if is_mapping(tc):
                    fn = tc.get("function")
                    if is_mapping(fn) and isinstance(fn.get("arguments"), str):
                        yield fn["arguments"]
    for k in ("prompt", "input"):
        v = body.get(k)
        if isinstance(v, str):
            yield v
        elif isinstance(v, list):
            for item in v:
                if isinstance(item, str):
                    yield item
