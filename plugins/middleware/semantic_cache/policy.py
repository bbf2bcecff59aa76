"""When a request may use the cache at all, and the per-request threshold.

Skipped (neither looked up nor stored): ``Cache-Control: no-cache``/``no-store``,
``x-watchllm-cache: bypass``, ``n > 1`` (one cached answer cannot be n samples),
``temperature`` above the configured maximum (the client asked for variety), and
tool calls in flight (a tool result or an assistant tool call in the conversation:
the answer depends on live tool output). Requests without ``temperature`` use the
provider default and are cached.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from multidict import CIMultiDict, CIMultiDictProxy

from gateway import GatewayError
from gateway.call import is_mapping

__all__ = ["skip_reason", "threshold_override"]


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is not None:
        return value
    if not isinstance(headers, (CIMultiDictProxy, CIMultiDict)):  # a plain dict: match any case
        for k, v in headers.items():
            if k.lower() == name:
                return v
    return ""


def skip_reason(headers: Mapping[str, str], body: Mapping[str, Any], max_temperature: float) -> str | None:
    cc = _header(headers, "cache-control").lower()
    if "no-cache" in cc or "no-store" in cc:
        return "no-cache"
    if _header(headers, "x-watchllm-cache").strip().lower() in ("bypass", "off", "no", "false", "0"):
        return "bypass"
    n = body.get("n")
    if isinstance(n, int) and n > 1:
        return "n"
    t = body.get("temperature")
    if isinstance(t, (int, float)) and t > max_temperature:
        return "temperature"
    for m in body.get("messages") or ():
        if is_mapping(m) and (m.get("role") in ("tool", "function") or m.get("tool_calls") or m.get("function_call")):
            return "tool_calls"
    return None


def threshold_override(headers: Mapping[str, str]) -> float | None:
    """``x-watchllm-cache-threshold: 0.95`` for one request; a malformed value is the client's error (400)."""
    raw = _header(headers, "x-watchllm-cache-threshold").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.0 < value <= 1.0:
        raise GatewayError("invalid_request", "x-watchllm-cache-threshold must be a number in (0, 1]", param="x-watchllm-cache-threshold")
    return value
