"""What a plugin is given (Services) and what it must provide (the three plugin contracts).

A plugin class is registered under one of the entry-point groups
``watchllm.middleware``, ``watchllm.providers`` or ``watchllm.tools``; its entry-point
name is the key used in YAML. Each class may declare ``Config``: a dataclass whose
fields are the plugin's options, validated at start-up (unknown keys are errors).
It is constructed once as ``cls(config, services)``. Optional lifecycle methods:

    async def startup(self) -> None    # after the services are up, before serving
    async def shutdown(self) -> None   # after draining, in reverse order

Heavy imports (torch, faiss) belong in ``startup``, never at module import: the
``watchllm plugins list`` command imports every plugin.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator, ClassVar, Protocol, runtime_checkable

from .call import Call, Target

if TYPE_CHECKING:  # pragma: no cover
    import aiohttp

    from .config import Config
    from .pricing import Pricing
    from .upstream.h1 import H1Client

__all__ = ["Services", "Provider", "Tool", "MiddlewarePlugin"]


def _h1() -> "H1Client":
    from .upstream.h1 import H1Client

    return H1Client()


@dataclass
class Services:
    """Shared services, injected into every plugin. No module-level globals anywhere.

    ``store``, ``state``, ``usage`` and ``metrics`` are ``None`` until the parts that
    provide them are configured; plugins MUST cope with that (skip, or fail start-up
    with a clear message).
    """

    config: "Config"
    log: logging.Logger
    pricing: "Pricing"
    http: "aiohttp.ClientSession | None" = None
    # The lean HTTP/1.1 client for non-streamed provider calls (gateway/upstream/h1.py); the
    # server replaces it with one whose SSRF resolver knows the config's allow-list.
    upstream: "H1Client" = field(default_factory=_h1)
    store: Any = None
    state: Any = None
    usage: Any = None
    metrics: Any = None
    providers: dict[str, "Provider"] = field(default_factory=dict)
    tools: dict[str, "Tool"] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)


class MiddlewarePlugin(Protocol):
    Config: ClassVar[type]

    def __init__(self, config: Any, services: Services) -> None: ...

    async def __call__(self, call: Call, call_next: Any, /) -> Any: ...


@runtime_checkable
class Provider(Protocol):
    """Translates OpenAI-format requests to a provider's wire format and back.

    Requests and responses are OpenAI-shaped dicts. ``chat_stream`` is an async
    generator of OpenAI ``chat.completion.chunk`` dicts, the last one carrying
    ``usage``; it MUST raise ``ProviderError`` before its first yield when the
    upstream answers with an error status, so the router can retry or fall back.
    ``body["model"]`` is already the target's model.
    """

    Config: ClassVar[type]

    async def chat(self, body: dict[str, Any], target: Target, call: Call) -> dict[str, Any]: ...

    def chat_stream(self, body: dict[str, Any], target: Target, call: Call) -> AsyncIterator[dict[str, Any]]: ...

    async def completions(self, body: dict[str, Any], target: Target, call: Call) -> dict[str, Any]: ...

    def completions_stream(self, body: dict[str, Any], target: Target, call: Call) -> AsyncIterator[dict[str, Any]]: ...

    async def embeddings(self, body: dict[str, Any], target: Target, call: Call) -> dict[str, Any]: ...

    async def list_models(self) -> list[str]: ...


class Tool(Protocol):
    """A server-side tool the gateway runs for a model. Results are strings or JSON-able dicts."""

    name: ClassVar[str]
    description: ClassVar[str]
    parameters: ClassVar[dict[str, Any]]
    timeout: float

    async def __call__(self, arguments: dict[str, Any], call: Call) -> str | dict[str, Any]: ...
