"""Counting findings: per call (``call.facts``), per process (for metrics) and per finding (store rows).

Nothing here ever sees a value: a finding is counted by detector name and action.
Store rows are batched and written off the request path by one background task;
the store is optional (no ``dlp_events`` repository: counts only, said once in the log).
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from typing import Any

from gateway.call import Call

__all__ = ["EventSink", "Tally"]

log = logging.getLogger("watchllm.dlp")


class EventSink:
    """Buffers ``(id, request_id, project_id, detector, action, created_at)`` rows; flushes in batches."""

    def __init__(self, store: Any, *, enabled: bool = True, interval: float = 0.5, max_buffer: int = 50_000) -> None:
        self._repo = getattr(store, "dlp_events", None) if (store is not None and enabled) else None
        self._rows: list[tuple[str, str, str, str, str, float]] = []
        self._interval = interval
        self._max = max_buffer
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        if enabled and store is not None and self._repo is None:
            log.warning("dlp: the store has no dlp_events repository; findings are counted but no event rows are written")

    @property
    def writes(self) -> bool:
        return self._repo is not None

    def add(self, request_id: str, project_id: str, detector: str, action: str) -> None:
        if self._repo is None:
            return
        if len(self._rows) >= self._max:  # the store is down or slow: keep memory bounded, count the loss
            self.dropped += 1
            return
        self._rows.append((uuid.uuid4().hex, request_id, project_id, detector, action, time.time()))

    def start(self) -> None:
        if self._repo is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="dlp-events")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.flush()

    async def flush(self) -> None:
        if not self._rows or self._repo is None:
            return
        rows, self._rows = self._rows, []
        try:
            await self._repo.insert_many(rows)
        except Exception as exc:  # noqa: BLE001 - never fail a request for an audit row; say so
            self.dropped += len(rows)
            log.error("dlp: could not write %d event rows: %s", len(rows), type(exc).__name__)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self.flush()


class Tally:
    """Counts one call's findings everywhere they are needed, as they happen (streams included)."""

    __slots__ = ("call", "sink", "totals")

    def __init__(self, call: Call, sink: EventSink, totals: Counter[tuple[str, str]]) -> None:
        self.call, self.sink, self.totals = call, sink, totals

    def __call__(self, detector: str, action: str) -> None:
        facts = self.call.facts
        facts.dlp_findings[detector] = facts.dlp_findings.get(detector, 0) + 1
        by_action = facts.extra.setdefault("dlp_actions", {}).setdefault(detector, {})
        by_action[action] = by_action.get(action, 0) + 1
        self.totals[(detector, action)] += 1
        self.sink.add(self.call.id, self.call.project_id, detector, action)
