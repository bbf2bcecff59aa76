"""Typed application keys (aiohttp AppKey) for what the server stores on the app."""
from __future__ import annotations

from typing import Any

from aiohttp import web

from ..pipeline import Handler
from ..plugin import Services

SERVICES: web.AppKey[Services] = web.AppKey("watchllm_services", Services)
CHAIN: web.AppKey[Handler] = web.AppKey("watchllm_chain", object)  # type: ignore[arg-type]
WRITER: web.AppKey[Any] = web.AppKey("watchllm_writer", object)
RUNTIME: web.AppKey[dict[str, Any]] = web.AppKey("watchllm_runtime", dict)
