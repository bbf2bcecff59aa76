"""UsageWriter: one usage row per request, durable before the last byte, group-committed to SQLite.

The HTTP writer awaits ``record(call, outcome)`` before it sends the final byte of a
successful response (the JSON body, or ``data: [DONE]``). What "durable" means there is set by
``WATCHLLM_USAGE_ACK``:

* ``journal`` (the default for a database file): ``record`` appends the row to this process's
  usage journal (``gateway/usage_journal.py``: a copy into a shared memory map, about a
  microsecond) and returns;
  the row is committed to SQLite in the background, by default by a child process that reads the
  journal (``gateway/usage_committer.py``; ``WATCHLLM_USAGE_COMMITTER=inline``: by the task below, through
  the store's thread). A killed process loses nothing: the next
  process to open the store replays the journal. Every read of the usage table (admin API,
  alerts, a budget counter re-seeded from the store) first waits, bounded, for the rows already
  acknowledged: the writer sets ``store.usage.settle`` to its ``flush``.
* ``commit``: ``record`` waits for the SQLite commit of the batch that holds its row (the
  design's original contract; a request then waits about one group commit, and behind a WAL
  checkpoint's fsync when one runs). The only mode for a ``:memory:`` store.

Inline (commit mode, or ``WATCHLLM_USAGE_COMMITTER=inline``), one background task commits: while one transaction is in flight the next batch fills, so under
load a commit carries many rows (RELIABILITY.md D3: ~13k single-row commits/s vs ~340k rows/s
in 50-row batches). Rows are ``INSERT OR IGNORE`` on the request id: a retried batch or a
replayed journal never duplicates (SQLite WAL, ``synchronous=NORMAL``: committed transactions
survive a process kill). A small batch waits ``WATCHLLM_USAGE_LINGER_TURNS`` event-loop turns
(default 1) for the answers finishing in the same turn. (Tried: in journal mode, gathering
batches for 20–100 ms. CPU per request was the same within noise in ``make bench`` and the
added p99 worse, 3.1–6.8 ms vs 1.5–2.4 ms: a big batch holds the GIL longer while it is bound.)
A batch that cannot be committed is retried with back-off in journal mode (its rows were
acknowledged and stay in the journal); in commit mode its waiters get the error. (Tried and dropped: committing on the event-loop thread
with a second sqlite3 connection, ~15 KB of WAL per row; checkpoints in a thread of their own,
which never let the WAL restart under continuous writes: 460 MB in 40 s.)

``close()`` (server shutdown, after draining) commits everything still queued and deletes the
journal segment.

Retention: ``WATCHLLM_USAGE_RETENTION_DAYS`` (unset or 0: keep forever) enables a purge
task that deletes older rows every ``WATCHLLM_USAGE_PURGE_INTERVAL_S`` (default 3600 s),
in small transactions so it never holds the write lock for long. The core config has no
section for it yet, hence the environment variables.

Metrics: ``queue_depth``, ``listeners`` (called after every commit with
``(rows, flush_seconds, queue_depth)``) and ``waiters`` (called per record with the seconds it
waited: the journal copy, or the commit) let the metrics middleware export them without this
module importing prometheus.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Sequence

import orjson

from .store.base import thread_nice_from_env
from .usage_committer import Committer, committer_mode_from_env, interval_from_env
from .usage_journal import SEGMENT_BYTES, UsageJournal, journal_dir, read_rows, replay_journal

__all__ = ["UsageWriter", "usage_row", "retention_from_env", "ack_from_env"]

log = logging.getLogger("watchllm.usage")

FlushListener = Callable[[int, float, int], None]
CAPTURE_LIMIT = 32 * 1024  # characters of prompt/completion text kept when capture is on
LINGER_TURNS = int(os.environ.get("WATCHLLM_USAGE_LINGER_TURNS", "1"))  # event-loop turns a small batch waits
LINGER_ROWS = 16            # ... unless it already has this many rows
ACK_MODES = ("journal", "commit")
SETTLE_TIMEOUT_S = 5.0      # journal mode: how long a read of the usage table waits for acknowledged rows
ADOPT_INTERVAL_S = 30.0     # journal mode: how often segments of dead processes are looked for
RETRY_PAUSE_S = 1.0         # journal mode: pause before committing a failed batch again


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


def ack_from_env(environ: dict[str, str] | None = None) -> str:
    """``WATCHLLM_USAGE_ACK``: ``journal`` (default) or ``commit`` (see the module doc)."""
    env = os.environ if environ is None else environ
    mode = (env.get("WATCHLLM_USAGE_ACK") or "journal").strip().lower()
    if mode not in ACK_MODES:
        raise ValueError(f"WATCHLLM_USAGE_ACK must be one of {', '.join(ACK_MODES)}, got {mode!r}")
    return mode


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


def _discard(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:  # the next start replays it: nothing is lost, rows are not doubled
        log.warning("usage journal: cannot delete %s: %s", path.name, exc)


class UsageWriter:
    def __init__(
        self, store: Any, *, max_batch: int = 1000, retention_s: float | None = None,
        purge_interval_s: float | None = None, retry_delays: Sequence[float] = (0.05, 0.2, 1.0),
        ack: str | None = None, journal_segment_bytes: int = SEGMENT_BYTES, committer: str | None = None,
    ) -> None:
        env_retention, env_interval = retention_from_env()
        self.store = store
        self.max_batch = max_batch
        self.retention_s = retention_s if retention_s is not None else env_retention
        self.purge_interval_s = purge_interval_s if purge_interval_s is not None else env_interval
        self.retry_delays = tuple(retry_delays)
        path = getattr(store, "path", None)
        in_memory = not path or path == ":memory:"
        self.ack = "commit" if in_memory else (ack or ack_from_env())
        self.journal = UsageJournal(journal_dir(path), segment_bytes=journal_segment_bytes) if self.ack == "journal" else None
        # journal mode: who commits the journalled rows, a child process (default) or this process's store thread
        self.committer_mode = (committer or committer_mode_from_env()) if self.journal is not None else "inline"
        self._committer: Committer | None = None
        self._journalled = 0  # rows appended for the committer process
        self._committer_closing: asyncio.Task[bool] | None = None  # after a journal write failed
        self.listeners: list[FlushListener] = []
        self.waiters: list[Callable[[float], None]] = []
        # (sequence number, row, future of a waiter in commit mode or None for a journalled row)
        self._queue: deque[tuple[int, tuple[Any, ...], asyncio.Future[None] | None]] = deque()
        self._seq = 0        # rows recorded so far
        self._done = 0       # every row up to this sequence number is committed (or, in commit mode, failed)
        self._flushers: list[tuple[int, asyncio.Future[None]]] = []
        self._rotated: list[tuple[int, Path]] = []  # journal segments to delete once their last row is committed
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._purge_task: asyncio.Task[None] | None = None
        self._adopt_task: asyncio.Task[None] | None = None
        self._closing = False
        self._left_in_journal = False
        # counters for tests, logs and /metrics
        self.committed = 0
        self.commits = 0
        self.failures = 0
        self.purged = 0
        self.replayed = 0
        self.last_flush_s = 0.0

    @property
    def queue_depth(self) -> int:
        """Rows acknowledged or waiting but not yet committed."""
        depth = len(self._queue)
        if self._committer is not None:
            depth += max(0, self._journalled - self._committer.rows)
        return depth

    async def start(self) -> None:
        if self.journal is not None:
            self.replayed = await replay_journal(self.store, self.journal.directory)
            try:
                self.journal.open()  # reserves a segment's blocks: fails on a (nearly) full disk
            except OSError as exc:
                log.error("usage journal: cannot open a segment (%s); acknowledging rows after their commit", exc)
                self.ack, self.journal = "commit", None
        if self.journal is not None and self.committer_mode == "process":
            await self._start_committer()
        if self.journal is not None:
            self.store.usage.settle = self._settle
            self._adopt_task = asyncio.create_task(self._adopt_loop(), name="usage-journal-adopt")
        self._task = asyncio.create_task(self._run(), name="usage-writer")
        if self.retention_s:
            self._purge_task = asyncio.create_task(self._purge_loop(), name="usage-purge")

    async def _start_committer(self) -> None:
        assert self.journal is not None and self.journal.path is not None
        committer = Committer(self.store.path, interval_s=interval_from_env(), nice=thread_nice_from_env(),
                              busy_timeout_ms=self.store.busy_timeout_ms, on_commit=self._on_committed)
        try:
            await committer.start(self.journal.index, self.journal.path)
        except OSError as exc:
            log.error("usage: cannot start the committer process (%s); committing in this process", exc)
            self.committer_mode = "inline"
            return
        self._committer = committer

    def _on_committed(self, rows: int, seconds: float) -> None:
        self.committed += rows
        self.commits += 1
        self.last_flush_s = seconds
        for fn in self.listeners:
            try:
                fn(rows, seconds, self.queue_depth)
            except Exception:  # metrics must never break usage
                log.exception("usage flush listener failed")

    async def record(self, call: Any, outcome: Any) -> None:
        """Make the row durable (journal or commit, see the module doc); raises if it could not be."""
        row = usage_row(call, outcome)
        if self._task is None or self._task.done():
            await self._commit([row])  # not started or already closed: write it directly
            return
        t0 = time.perf_counter()
        if self._committer is not None and self.journal is not None:
            try:
                self.journal.append(row)  # the committer process takes it from here
            except OSError as exc:
                log.error("usage journal: write failed (%s); acknowledging after the commit from now on", exc)
                self._journal_failed()
            else:
                self._journalled += 1
                if self.journal.full():
                    self._rotate_for_committer()
                else:
                    self._prepare_spare_if_due()
                if self.waiters:
                    wait = time.perf_counter() - t0
                    for fn in self.waiters:
                        fn(wait)
                return
        fut: asyncio.Future[None] | None = None
        if self.journal is not None:
            try:
                self.journal.append(row)
            except OSError as exc:  # disk full, I/O error: this row (and the rest) waits for its commit
                log.error("usage journal: write failed (%s); acknowledging after the commit from now on", exc)
                self._journal_failed()
                fut = asyncio.get_running_loop().create_future()
        else:
            fut = asyncio.get_running_loop().create_future()
        self._seq += 1
        self._queue.append((self._seq, row, fut))
        self._wake.set()
        if fut is not None:
            await fut
        if self.waiters:
            wait = time.perf_counter() - t0
            for fn in self.waiters:
                fn(wait)

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until every row recorded so far is committed; False if ``timeout`` ran out first."""
        if self._committer is not None and self.journal is not None:
            t0 = time.monotonic()
            if not await self._committer.wait_for(self.journal.position, timeout):
                return False
            if timeout is not None:
                timeout = max(0.0, timeout - (time.monotonic() - t0))
        target = self._seq
        if self._done >= target or self._task is None or self._task.done():
            return self._done >= target
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._flushers.append((target, fut))
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def _settle(self) -> None:
        """Before a read of the usage table: the rows already acknowledged, committed (bounded wait)."""
        if not await self.flush(timeout=SETTLE_TIMEOUT_S):
            log.warning("usage: a read went ahead with rows not yet committed (the database is failing)")

    async def close(self) -> None:
        """Commit everything still queued, then stop. Safe to call twice."""
        self._closing = True
        self._wake.set()
        for task in (self._purge_task, self._adopt_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._purge_task = self._adopt_task = None
        if self._task is not None:
            await self._task
        if self._queue:  # records queued after the loop ended
            await self._drain()
        if self._committer is not None:
            await self._stop_committer()
        if self._committer_closing is not None:
            await self._committer_closing
        if self.journal is not None:
            self.journal.close(delete=not self._left_in_journal)
        if self.store.usage.settle == self._settle:
            self.store.usage.settle = None
        log.info("usage writer closed: %d rows in %d commits, %d failed%s", self.committed, self.commits, self.failures,
                 "; uncommitted rows stay in the journal for the next start" if self._left_in_journal else "")

    def _journal_failed(self) -> None:
        """Stop journalling: rows already in the file stay there until committed (close keeps it)."""
        self._left_in_journal = True
        self.ack = "commit"
        journal, self.journal = self.journal, None
        if journal is not None:
            if self._committer is not None:  # it commits what the journal holds, then stops (close awaits it)
                committer, self._committer = self._committer, None
                self._committer_closing = asyncio.get_running_loop().create_task(
                    committer.close(journal.position[1]), name="usage-committer-close")
            journal.close(delete=False)

    def _prepare_spare_if_due(self) -> None:
        """Half way through a segment, make the next one in a worker thread (a rotation is then a swap)."""
        assert self.journal is not None
        if self.journal.wants_spare():
            asyncio.get_running_loop().run_in_executor(None, self.journal.prepare)

    def _rotate_for_committer(self) -> None:
        assert self.journal is not None and self._committer is not None
        end = self.journal.position[1]
        try:
            self.journal.rotate()  # the committer deletes the old segment once its rows are committed
        except OSError as exc:
            log.error("usage journal: cannot start a new segment (%s); the current one keeps growing", exc)
            return
        assert self.journal.path is not None
        self._committer.rotated(end, self.journal.index, self.journal.path)
        asyncio.get_running_loop().run_in_executor(None, self.journal.release_retired)

    async def _stop_committer(self) -> None:
        """Let the committer finish the journal; if it cannot, commit what is left here."""
        assert self._committer is not None and self.journal is not None
        committer, self._committer = self._committer, None
        if await committer.close(self.journal.position[1]):
            return
        log.warning("usage committer did not confirm every row; committing the rest in this process")
        try:
            for path in committer.pending_paths():
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:  # finished and deleted meanwhile
                    continue
                try:
                    rows = list(read_rows(fd))
                finally:
                    os.close(fd)
                for i in range(0, len(rows), self.max_batch):
                    await self._commit(rows[i:i + self.max_batch])
                if path != self.journal.path:  # a rotated segment: done with (the live one closes below)
                    _discard(path)
        except Exception as exc:
            log.error("usage: %s; uncommitted rows stay in the journal for the next start", exc)
            self._left_in_journal = True

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
            self._maybe_rotate()
            batch = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
            t0 = time.perf_counter()
            try:
                await self._commit([row for _, row, _ in batch])
            except Exception as exc:
                self.failures += len(batch)
                outcome = self._failed(batch, exc)
                if outcome == "closing":
                    return  # the journal keeps the rows
                if outcome == "retry":
                    await asyncio.sleep(RETRY_PAUSE_S)
            else:
                for _, _, fut in batch:
                    if fut is not None and not fut.done():
                        fut.set_result(None)
                self._advance(batch[-1][0])
            self.last_flush_s = time.perf_counter() - t0
            for fn in self.listeners:
                try:
                    fn(len(batch), self.last_flush_s, len(self._queue))
                except Exception:  # metrics must never break usage
                    log.exception("usage flush listener failed")
            if once:
                return

    def _failed(self, batch: list[tuple[int, tuple[Any, ...], asyncio.Future[None] | None]], exc: Exception) -> str | None:
        """A batch could not be committed. Waiters (commit mode) get the error; journalled rows were
        acknowledged, so they go back to the front of the queue (and stay in the journal): "retry",
        or "closing" when the writer stops and leaves them to the next start's replay."""
        journalled = [e for e in batch if e[2] is None]
        for _, _, fut in batch:
            if fut is not None and not fut.done():
                fut.set_exception(exc)
        if not journalled:
            log.error("usage: %d rows could not be committed: %s", len(batch), exc)
            self._advance(batch[-1][0])
            return None
        if self._closing:
            log.error("usage: %d journalled rows could not be committed (%s); the next start replays them",
                      len(journalled), exc)
            self._left_in_journal = True
            self._queue.clear()
            return "closing"
        log.error("usage: %d journalled rows could not be committed (%s); retrying", len(journalled), exc)
        self._queue.extendleft(reversed(journalled))
        return "retry"

    def _advance(self, seq: int) -> None:
        self._done = max(self._done, seq)
        if self._rotated and self._rotated[0][0] <= self._done:
            keep = []
            for last, path in self._rotated:
                if last <= self._done:  # off the event loop: freeing a segment file can take milliseconds
                    asyncio.get_running_loop().run_in_executor(None, _discard, path)
                else:
                    keep.append((last, path))
            self._rotated = keep
        if self._flushers:
            waiting = []
            for target, fut in self._flushers:
                if target <= self._done:
                    if not fut.done():
                        fut.set_result(None)
                else:
                    waiting.append((target, fut))
            self._flushers = waiting

    def _maybe_rotate(self) -> None:
        """A full segment is swapped for a new one; every row in it is queued or committed by now."""
        if self.journal is None or self._committer is not None:
            return
        if not self.journal.full():
            self._prepare_spare_if_due()
            return
        try:
            old = self.journal.rotate()
        except OSError as exc:
            log.error("usage journal: cannot start a new segment (%s); the current one keeps growing", exc)
            return
        asyncio.get_running_loop().run_in_executor(None, self.journal.release_retired)
        if old is not None:
            self._rotated.append((self._seq, old))

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

    async def _adopt_loop(self) -> None:
        """Now and then, commit the segments of a sibling worker that died (their lock went with it):
        without this they would wait for the next start."""
        while True:
            await asyncio.sleep(ADOPT_INTERVAL_S)
            journal = self.journal
            if journal is None:
                return
            try:
                self.replayed += await replay_journal(self.store, journal.directory)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("usage journal: adopting orphaned segments failed")

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
