"""UsageWriter: one usage row per request, group-committed, durable before the last byte.

The HTTP writer awaits ``record(call, outcome)`` before it sends the final byte of a
successful response (the JSON body, or ``data: [DONE]``). ``record`` appends the row to
a queue and waits for the commit of the batch that holds it. One background task
commits: while one transaction is in flight the next batch fills, so under load a
commit carries many rows (RELIABILITY.md D3: ~13k single-row commits/s vs ~340k rows/s
in 50-row batches) and each request waits about one commit (a few ms), not a write of
its own. Rows are ``INSERT OR IGNORE`` on the request id: a retried batch never
duplicates, and a crash loses nothing a client was told about (SQLite WAL,
``synchronous=NORMAL``: committed transactions survive a process kill). A small batch waits
``WATCHLLM_USAGE_LINGER_TURNS`` event-loop turns (default 1) for the answers finishing in the
same turn. (Tried and dropped: committing on the event-loop thread with a second sqlite3
connection. It saved the thread hop, but small commits write ~15 KB of WAL per row, so the WAL
either grew without bound or needed checkpoints whose fsync stalled the loop; p99 was no better.
Also dropped: checkpoints off the commit path, in a thread on their own connection. Under
continuous writes a PASSIVE checkpoint never catches up with the writer, so the WAL is never
restarted: it grew to 460 MB in 40 s at 700 rows/s. SQLite's autocheckpoint, inside a commit,
is what lets the WAL restart; its fsync is the usage path's p99 at high load.)

``close()`` (server shutdown, after draining) commits everything still queued.

Retention: ``WATCHLLM_USAGE_RETENTION_DAYS`` (unset or 0: keep forever) enables a purge
task that deletes older rows every ``WATCHLLM_USAGE_PURGE_INTERVAL_S`` (default 3600 s),
in small transactions so it never holds the write lock for long. The core config has no
section for it yet, hence the environment variables.

Metrics: ``queue_depth``, ``listeners`` (called after every commit with
``(rows, flush_seconds, queue_depth)``) and ``waiters`` (called per record with its
commit wait in seconds) let the metrics middleware export them without this module
importing prometheus.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from typing import Any, Callable, Sequence

import orjson

__all__ = ["UsageWriter", "usage_row", "retention_from_env"]

log = logging.getLogger("watchllm.usage")

FlushListener = Callable[[int, float, int], None]
CAPTURE_LIMIT = 32 * 1024  # characters of prompt/completion text kept when capture is on
LINGER_TURNS = int(os.environ.get("WATCHLLM_USAGE_LINGER_TURNS", "1"))  # event-loop turns a small batch waits
LINGER_ROWS = 16            # ... unless it already has this many rows


def retention_from_env(environ: dict[str, str] | None = None) -> tuple[float | None, float]:
    """(retention in seconds or None, purge interval in seconds) from the environment."""
    env = os.environ if environ is None else environ
    raw = env.get("WATCHLLM_USAGE_RETENTION_DAYS", "").strip()
    interval = float(env.get("WATCHLLM_USAGE_PURGE_INTERVAL_S", "3600") or 3600)
    if not raw:
        return None, interval
    try:
        days = float(raw)
    except ValueError:
        raise ValueError(f"WATCHLLM_USAGE_RETENTION_DAYS must be a number of days, got {raw!r}") from None
    return (days * 86400 if days > 0 else None), interval


def _captured_text(call: Any, outcome: Any) -> tuple[str | None, str | None]:
    """Prompt/completion text when the project opted in (``settings.capture_text``); the body
    is already DLP-masked by then, because DLP edits ``call.body`` before ``call_next``."""
    project = getattr(call, "project", None)
    if project is None or not project.settings.get("capture_text"):
        return None, None
    prompt = call.prompt_text()[:CAPTURE_LIMIT]
    answer = None
    body = getattr(outcome, "body", None)
    if isinstance(body, dict):
        parts = []
        for choice in body.get("choices") or ():
            msg = choice.get("message") or {}
            text = msg.get("content") if isinstance(msg, dict) else None
            if text is None:
                text = choice.get("text")
            if isinstance(text, str):
                parts.append(text)
        answer = "\n".join(parts)[:CAPTURE_LIMIT]
    return prompt, answer


def usage_row(call: Any, outcome: Any, now: float | None = None) -> tuple[Any, ...]:
    """The row for ``call``, in ``gateway.store.usage.COLUMNS`` order."""
    f = call.facts
    usage = outcome.usage
    err = outcome.error
    prompt, answer = _captured_text(call, outcome)
    latency_ms = (time.perf_counter() - call.started) * 1000
    return (
        call.id, call.project_id, call.key.id if call.key else None, call.endpoint, call.model or None,
        f.model_served, f.provider, f.attempts,
        usage.prompt_tokens if usage else 0, usage.completion_tokens if usage else 0,
        int(outcome.cost_micros or 0), f.cached, int(f.tokens_saved or 0), int(f.cost_saved_micros or 0),
        round(latency_ms, 3), f.upstream_ms, f.ttft_ms, outcome.status, outcome.ended,
        err.code if err is not None else None,
        orjson.dumps(f.dlp_findings).decode() if f.dlp_findings else None,
        "proxy", prompt, answer, call.created_at,
    )


class UsageWriter:
    def __init__(
        self, store: Any, *, max_batch: int = 1000, retention_s: float | None = None,
        purge_interval_s: float | None = None, retry_delays: Sequence[float] = (0.05, 0.2, 1.0),
    ) -> None:
        env_retention, env_interval = retention_from_env()
        self.store = store
        self.max_batch = max_batch
        self.retention_s = retention_s if retention_s is not None else env_retention
        self.purge_interval_s = purge_interval_s if purge_interval_s is not None else env_interval
        self.retry_delays = tuple(retry_delays)
        self.listeners: list[FlushListener] = []
        self.waiters: list[Callable[[float], None]] = []
        self._queue: deque[tuple[tuple[Any, ...], asyncio.Future[None]]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._purge_task: asyncio.Task[None] | None = None
        self._closing = False
        # counters for tests, logs and /metrics
        self.committed = 0
        self.commits = 0
        self.failures = 0
        self.purged = 0
        self.last_flush_s = 0.0

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="usage-writer")
        if self.retention_s:
            self._purge_task = asyncio.create_task(self._purge_loop(), name="usage-purge")

    async def record(self, call: Any, outcome: Any) -> None:
        """Queue the row and return once it is committed (raises if it could not be)."""
        row = usage_row(call, outcome)
        if self._task is None or self._task.done():
            await self._commit([row])  # not started or already closed: write it directly
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        t0 = time.perf_counter()
        self._queue.append((row, fut))
        self._wake.set()
        await fut
        if self.waiters:
            wait = time.perf_counter() - t0
            for fn in self.waiters:
                fn(wait)

    async def flush(self) -> None:
        """Wait until everything queued so far is committed."""
        if not self._queue:
            return
        _, last = self._queue[-1]
        await asyncio.wait({last})

    async def close(self) -> None:
        """Commit everything still queued, then stop. Safe to call twice."""
        self._closing = True
        self._wake.set()
        if self._purge_task is not None:
            self._purge_task.cancel()
            await asyncio.gather(self._purge_task, return_exceptions=True)
            self._purge_task = None
        if self._task is not None:
            await self._task
        if self._queue:  # records queued after the loop ended
            await self._drain()
        log.info("usage writer closed: %d rows in %d commits, %d failed", self.committed, self.commits, self.failures)

    # the single writer -----------------------------------------------------------
    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            for _ in range(LINGER_TURNS):  # let this loop turn's other answers join the batch
                if len(self._queue) >= LINGER_ROWS or self._closing:
                    break
                await asyncio.sleep(0)
            await self._drain(once=True)

    async def _drain(self, *, once: bool = False) -> None:
        while self._queue:
            batch = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
            t0 = time.perf_counter()
            try:
                await self._commit([row for row, _ in batch])
            except Exception as exc:  # the rows are not durable: tell each waiter
                self.failures += len(batch)
                log.error("usage: %d rows could not be committed: %s", len(batch), exc)
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
            else:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_result(None)
            self.last_flush_s = time.perf_counter() - t0
            for fn in self.listeners:
                try:
                    fn(len(batch), self.last_flush_s, len(self._queue))
                except Exception:  # metrics must never break usage
                    log.exception("usage flush listener failed")
            if once:
                return

    async def _commit(self, rows: list[tuple[Any, ...]]) -> None:
        delays = iter(self.retry_delays)
        while True:
            try:
                await self.store.usage.insert_many(rows)
            except Exception as exc:  # SQLITE_BUSY past busy_timeout, disk full, ...
                delay = next(delays, None)
                if delay is None:
                    raise
                log.warning("usage: commit of %d rows failed (%s), retrying in %.2fs", len(rows), exc, delay)
                await asyncio.sleep(delay)
                continue
            self.committed += len(rows)
            self.commits += 1
            return

    # retention -------------------------------------------------------------------
    async def purge_once(self, now: float | None = None) -> int:
        if not self.retention_s:
            return 0
        cutoff = (now if now is not None else time.time()) - self.retention_s
        n = await self.store.usage.purge_before(cutoff)
        self.purged += n
        if n:
            log.info("usage: purged %d rows older than %.1f days", n, self.retention_s / 86400)
        return n

    async def _purge_loop(self) -> None:
        await asyncio.sleep(min(self.purge_interval_s, 60.0))  # not in the start-up rush
        while True:
            try:
                await self.purge_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("usage purge failed")
            await asyncio.sleep(self.purge_interval_s)
