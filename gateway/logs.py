"""Structured JSON logs: one JSON object per line, and one ``watchllm.request`` line per request.

``configure_logging()`` installs the formatter on the root logger (replacing its handlers),
level from ``LOG_LEVEL`` (default INFO), format from ``LOG_FORMAT`` (``json``, the default,
or ``text`` for the classic human format). In JSON format the per-request lines are buffered and
written at most every ``LOG_FLUSH_MS`` (default 50; 0 writes each line at once), like nginx's
``access_log ... buffer= flush=``: one ``write`` per batch of whole lines of at most ``PIPE_BUF``
bytes (so lines of several workers sharing a pipe never interleave). Every other record is written
at once, after what is buffered; ``flush_logs()`` (called at shutdown) writes what is left. Every line has ``ts`` (UTC, ISO 8601 with ms),
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

import asyncio
import logging
import os
import select
import sys
import time
from typing import IO, Any

import orjson

from .call import Call
from .reply import Outcome

__all__ = ["JsonFormatter", "JsonLineHandler", "configure_logging", "flush_logs", "request_fields", "log_request",
           "REQUEST_LOGGER"]

REQUEST_LOGGER = "watchllm.request"
_RESERVED = frozenset({"ts", "level", "logger", "msg", "exc"})
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
_request_log = logging.getLogger(REQUEST_LOGGER)
_watchllm_log = logging.getLogger("watchllm")
_PIPE_BUF = getattr(select, "PIPE_BUF", 4096)
_BUFFER_MAX = 64 * 1024  # bytes buffered before a write regardless of the timer
_ts_cache: tuple[int, str] = (-1, "")


def _timestamp(t: float) -> str:
    """UTC ISO 8601 with milliseconds ("2026-12-05T11:32:57.123Z"); the date part is made once a second."""
    global _ts_cache
    sec = int(t)
    cached, prefix = _ts_cache
    if sec != cached:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(sec))
        _ts_cache = (sec, prefix)  # one assignment: another thread sees the old pair or the new
    return f"{prefix}{int((t - sec) * 1000):03d}Z"


def _default(value: Any) -> Any:
    return repr(value)


class JsonFormatter(logging.Formatter):
    """One compact JSON object per record (orjson; non-JSON values become their repr)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _timestamp(record.created),
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


class JsonLineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """JSON lines on a stream; request lines (``append``) are buffered for at most ``flush_s``.

    Written from the event loop's thread (request lines, the timer) and any other (records):
    both take the handler's lock. With no running event loop a request line is written at once.
    """

    def __init__(self, stream: IO[str], flush_s: float) -> None:
        super().__init__(stream)
        self.setFormatter(JsonFormatter())
        self.flush_s = flush_s
        self._lines: list[bytes] = []
        self._size = 0
        self._timer_loop: asyncio.AbstractEventLoop | None = None
        try:
            self._fd: int | None = stream.fileno()
        except (AttributeError, OSError, ValueError):  # StringIO and the like
            self._fd = None

    def append(self, line: bytes) -> None:
        """Buffer one whole line (ending in a newline); written within ``flush_s``."""
        with self.lock:  # type: ignore[union-attr]
            self._lines.append(line)
            self._size += len(line)
            if self.flush_s <= 0 or self._size >= _BUFFER_MAX:
                self._drain()
                return
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._drain()
                return
            if self._timer_loop is not loop:  # none pending, or pending on a loop that is gone
                self._timer_loop = loop
                loop.call_later(self.flush_s, self._on_timer, loop)

    def _on_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        with self.lock:  # type: ignore[union-attr]
            if self._timer_loop is loop:
                self._timer_loop = None
            self._drain()

    def _drain(self) -> None:
        """Write the buffered lines (caller holds the lock); a failed write drops them, never raises."""
        if not self._lines:
            return
        lines, self._lines, self._size = self._lines, [], 0
        try:
            if self._fd is None:
                self.stream.write(b"".join(lines).decode())
                return
            self.stream.flush()  # anything written through the text stream goes first
            chunk: list[bytes] = []
            size = 0
            for line in lines:  # whole lines, at most PIPE_BUF bytes per write where a line allows
                if chunk and size + len(line) > _PIPE_BUF:
                    self._write_all(b"".join(chunk))
                    chunk, size = [], 0
                chunk.append(line)
                size += len(line)
            self._write_all(b"".join(chunk))
        except Exception:  # a log write must never break a response (a closed or full stderr)
            pass

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]  # type: ignore[arg-type]

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._drain()
            super().flush()

    def emit(self, record: logging.LogRecord) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._drain()  # keep the order of lines
        super().emit(record)


_json_handler: JsonLineHandler | None = None


def _flush_interval() -> float:
    raw = os.environ.get("LOG_FLUSH_MS", "50").strip()
    try:
        return max(0.0, float(raw)) / 1000
    except ValueError:
        return 0.05


def configure_logging(level: str | int | None = None, *, fmt: str | None = None, stream: IO[str] | None = None) -> logging.Handler:
    """Root logging for the server process: JSON lines on stderr. Returns the installed handler."""
    global _json_handler
    level = level if level is not None else os.environ.get("LOG_LEVEL", "INFO")
    if isinstance(level, str):
        name = level.strip().upper()
        level = logging.getLevelName(name) if isinstance(logging.getLevelName(name), int) else logging.INFO
    fmt = (fmt or os.environ.get("LOG_FORMAT", "json")).strip().lower()
    out = stream if stream is not None else sys.stderr
    handler: logging.Handler
    if fmt == "text":
        handler = logging.StreamHandler(out)
        handler.setFormatter(logging.Formatter(_TEXT_FORMAT))
        _json_handler = None
    else:
        handler = _json_handler = JsonLineHandler(out, _flush_interval())
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
    if type(call) is Call and type(outcome) is Outcome:
        return _typed_fields(call, outcome, known_models)
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


def _typed_fields(call: Call, outcome: Outcome, known_models: Any) -> dict[str, Any]:
    """``request_fields`` for the gateway's own Call and Outcome: the same fields, read directly (per request)."""
    model = call.body.get("model") or None
    if model is not None:
        model = str(model)
        if known_models is not None and model not in known_models:
            model = "other"
    f = call.facts
    usage = outcome.usage
    err = outcome.error
    key = call.key
    project = call.project
    cost = int(outcome.cost_micros or 0)
    return {
        "request_id": call.id,
        "project_id": project.id if project else "anonymous",
        "key_id": key.id if key is not None else None,
        "endpoint": call.endpoint,
        "model": model,
        "model_served": f.model_served,
        "provider": f.provider,
        "status": outcome.status,
        "ended": outcome.ended,
        "error_code": err.code if err is not None else None,
        "latency_ms": round((time.perf_counter() - call.started) * 1000, 3),
        "upstream_ms": f.upstream_ms,
        "ttft_ms": f.ttft_ms,
        "attempts": f.attempts,
        "prompt_tokens": usage.prompt_tokens if usage is not None else 0,
        "completion_tokens": usage.completion_tokens if usage is not None else 0,
        "cost_micros": cost,
        "cost_usd": cost / 1e6,
        "cached": f.cached,
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
    handler = _json_handler
    root_handlers = logging.root.handlers
    if (handler is not None and len(root_handlers) == 1 and root_handlers[0] is handler and not _request_log.handlers
            and not _watchllm_log.handlers and not _request_log.filters and _request_log.propagate and _watchllm_log.propagate):
        # Only our handler would see the record: the same line, made without a LogRecord, buffered.
        out = {"ts": _timestamp(time.time()), "level": "INFO", "logger": REQUEST_LOGGER, "msg": "request", **fields}
        try:
            line = orjson.dumps(out, default=_default, option=orjson.OPT_APPEND_NEWLINE)
        except Exception:
            return
        handler.append(line)
        return
    _request_log.info("request", extra={"fields": fields})


def flush_logs() -> None:
    """Write what the JSON handler holds (at shutdown; ``logging.shutdown`` does it too at exit)."""
    if _json_handler is not None:
        _json_handler.flush()
