"""Structured JSON logs: one JSON object per line, and one ``watchllm.request`` line per request.

``configure_logging()`` installs the formatter on the root logger (replacing its handlers),
level from ``LOG_LEVEL`` (default INFO), format from ``LOG_FORMAT`` (``json``, the default,
or ``text`` for the classic human format). Every line has ``ts`` (UTC, ISO 8601 with ms),
``level``, ``logger``, ``msg``; exceptions add ``exc``; fields passed as
``extra={"fields": {...}}`` are merged in (reserved keys cannot be overwritten).

``log_request(call, outcome)`` writes the per-request line at INFO on ``watchllm.request``::

    {"ts": "...", "level": "INFO", "logger": "watchllm.request", "msg": "request",
     "request_id": "...", "project_id": "...", "key_id": "...", "endpoint": "chat.completions",
     "model": "gpt-4o", "model_served": "gpt-4o-2024-08-06", "provider": "openai", "status": 200,
     "ended": "complete", "error_code": null, "latency_ms": 812.4, "upstream_ms": 790.1,
     "ttft_ms": null, "attempts": 1, "prompt_tokens": 12, "completion_tokens": 40,
     "cost_micros": 460, "cost_usd": 0.00046, "cached": null}

It never carries prompt or completion text, API keys (only the public key id), headers or
secrets: the fields are picked one by one from the call's facts, nothing is dumped wholesale.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from datetime import datetime, timezone
from typing import IO, Any

import orjson

__all__ = ["JsonFormatter", "configure_logging", "request_fields", "log_request", "REQUEST_LOGGER"]

REQUEST_LOGGER = "watchllm.request"
_RESERVED = frozenset({"ts", "level", "logger", "msg", "exc"})
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
_request_log = logging.getLogger(REQUEST_LOGGER)


def _default(value: Any) -> Any:
    return repr(value)


class JsonFormatter(logging.Formatter):
    """One compact JSON object per record (orjson; non-JSON values become their repr)."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, tz=timezone.utc)
        out: dict[str, Any] = {
            "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for k, v in fields.items():
                if k not in _RESERVED:
                    out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        return orjson.dumps(out, default=_default, option=orjson.OPT_NON_STR_KEYS).decode()


def configure_logging(level: str | int | None = None, *, fmt: str | None = None, stream: IO[str] | None = None) -> logging.Handler:
    """Root logging for the server process: JSON lines on stderr. Returns the installed handler."""
    level = level if level is not None else os.environ.get("LOG_LEVEL", "INFO")
    if isinstance(level, str):
        name = level.strip().upper()
        level = logging.getLevelName(name) if isinstance(logging.getLevelName(name), int) else logging.INFO
    fmt = (fmt or os.environ.get("LOG_FORMAT", "json")).strip().lower()
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(logging.Formatter(_TEXT_FORMAT) if fmt == "text" else JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("watchllm").setLevel(level)
    # aiosqlite logs SQL parameters (usage rows) at DEBUG: never below INFO.
    logging.getLogger("aiosqlite").setLevel(max(int(level), logging.INFO))
    return handler


def request_fields(call: Any, outcome: Any, known_models: Any = None) -> dict[str, Any]:
    """The per-request fields, picked explicitly (no text, no keys, no headers).

    A ``model`` that is not a configured alias is logged as "other": clients type anything
    there, secrets included, and the log must not echo it.
    """
    model = getattr(call, "model", None) or None
    if model is not None and known_models is not None and model not in known_models:
        model = "other"
    f = getattr(call, "facts", None)
    usage = getattr(outcome, "usage", None)
    err = getattr(outcome, "error", None)
    key = getattr(call, "key", None)
    started = getattr(call, "started", None)
    cost = int(getattr(outcome, "cost_micros", 0) or 0)
    return {
        "request_id": getattr(call, "id", None),
        "project_id": getattr(call, "project_id", None),
        "key_id": getattr(key, "id", None) if key is not None else None,
        "endpoint": getattr(call, "endpoint", None),
        "model": model,
        "model_served": getattr(f, "model_served", None),
        "provider": getattr(f, "provider", None),
        "status": getattr(outcome, "status", None),
        "ended": getattr(outcome, "ended", None),
        "error_code": getattr(err, "code", None) if err is not None else None,
        "latency_ms": round((time.perf_counter() - started) * 1000, 3) if isinstance(started, (int, float)) else None,
        "upstream_ms": getattr(f, "upstream_ms", None),
        "ttft_ms": getattr(f, "ttft_ms", None),
        "attempts": getattr(f, "attempts", None),
        "prompt_tokens": getattr(usage, "prompt_tokens", 0) if usage is not None else 0,
        "completion_tokens": getattr(usage, "completion_tokens", 0) if usage is not None else 0,
        "cost_micros": cost,
        "cost_usd": cost / 1e6,
        "cached": getattr(f, "cached", None),
    }


def log_request(call: Any, outcome: Any, known_models: Any = None) -> None:
    """One INFO line per request on ``watchllm.request``; free when INFO is off; never raises."""
    if not _request_log.isEnabledFor(logging.INFO):
        return
    try:
        fields = request_fields(call, outcome, known_models)
    except Exception:  # a log line must never break a response
        _request_log.debug("request fields unavailable", exc_info=True)
        return
    _request_log.info("request", extra={"fields": fields})
