"""The usage committer: a child process that commits a worker's usage journal to SQLite.

Why a process: with the rows committed by a thread of the gateway (``WATCHLLM_USAGE_COMMITTER=inline``),
each small batch is a trip to that thread and back (a futex wake, the thread's run holding the GIL
while it binds the rows, a self-pipe write to wake the event loop). At a moderate rate every request
brings its own batch, so those wake-ups are a large part of what a request costs (issue 9: CPU per
request in an open loop at half load was about twice the closed loop's), and the thread's time under
the GIL delays the event loop. The committer reads the journal the event loop already writes
(``gateway/usage_journal.py``: every row is in the page cache before its client is answered), so the
request path has nothing left to do for its row: no queue, no wake-up, no GIL shared with SQLite.

How it works: the gateway starts ``python -m gateway.usage_committer`` with one end of a socket pair,
and tells it, as JSON lines, which segments to follow (``segment``: index, path, first offset, and the
end of the one before when it rotated), when to commit at once (``flush``) and when to finish
(``close``, with the final end). Every ``interval`` (default 20 ms; while no rows come, the pause
doubles up to 250 ms) the committer reads the new whole rows of its segments (``pread``; a row is whole
when it ends in a newline with no zero byte before: reserved space is zeros, so a row still being
copied is never taken), commits them in one ``BEGIN IMMEDIATE`` transaction (``INSERT OR IGNORE`` on
the request id: a row committed twice, after a restart, is one row), deletes a rotated segment once
every row in it is committed, and answers with the position it reached (``{"at": [index, offset],
"rows": n, "s": seconds}``). The gateway's reads of the usage table wait for the position their rows
were written at (``UsageWriter.flush``).

It runs at a lower priority (``WATCHLLM_STORE_THREAD_NICE``, default nice 10): on a busy core the event
loop goes first. If the gateway dies, the committer sees the socket close, commits every whole row it
can still read, deletes the segment if no other process holds it, and exits. If the committer dies, the
gateway starts another one from the last position it confirmed. Nothing is lost either way: rows stay
in the journal until committed, and the next start replays what is left.
"""
from __future__ import annotations

import argparse
import asyncio
import fcntl
import logging
import math
import os
import select
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import orjson

from .logs import configure_logging
from .store.usage import insert_statements
from .usage_journal import RowDecoder, complete_lines

__all__ = ["Committer", "committer_mode_from_env", "interval_from_env", "main"]

log = logging.getLogger("watchllm.usage")

MODES = ("process", "inline")
DEFAULT_INTERVAL_MS = 20.0
READ_BYTES = 1 << 20          # bytes read from a segment per pass
MAX_ROWS = 5000               # rows per transaction
RETRY_PAUSE_S = 1.0           # after a failed commit
IDLE_MAX_S = 0.25             # an idle committer's pause doubles from the interval up to this
DEAD_LOCK_WAIT_S = 2.0        # after the gateway died: how long its segment's lock may take to go
DEAD_ATTEMPTS = 3             # commits tried after the gateway died, before leaving its rows to the next start
RESTART_DELAYS = (0.2, 1.0, 5.0, 30.0)


def committer_mode_from_env(environ: dict[str, str] | None = None) -> str:
    """``WATCHLLM_USAGE_COMMITTER``: ``process`` (default) or ``inline`` (a thread of the gateway)."""
    env = os.environ if environ is None else environ
    mode = (env.get("WATCHLLM_USAGE_COMMITTER") or "process").strip().lower()
    if mode not in MODES:
        raise ValueError(f"WATCHLLM_USAGE_COMMITTER must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def interval_from_env(environ: dict[str, str] | None = None) -> float:
    """``WATCHLLM_USAGE_COMMIT_INTERVAL_MS`` (default 20), in seconds."""
    env = os.environ if environ is None else environ
    raw = env.get("WATCHLLM_USAGE_COMMIT_INTERVAL_MS", "").strip() or str(DEFAULT_INTERVAL_MS)
    try:
        ms = float(raw)
    except ValueError:
        raise ValueError(f"WATCHLLM_USAGE_COMMIT_INTERVAL_MS must be a number of milliseconds, got {raw!r}") from None
    if not 1 <= ms <= 10_000:
        raise ValueError(f"WATCHLLM_USAGE_COMMIT_INTERVAL_MS must be between 1 and 10000, got {raw!r}")
    return ms / 1000


# -- the child process ------------------------------------------------------------------------------

@dataclass
class _Segment:
    index: int
    path: str
    fd: int
    off: int
    end: int | None = None  # known once the gateway moved on to the next segment (or closed)
    decoder: RowDecoder = field(default_factory=RowDecoder)

    @property
    def done(self) -> bool:
        return self.end is not None and self.off >= self.end


class _Loop:
    def __init__(self, sock: socket.socket, db_path: str, interval_s: float, busy_timeout_ms: int) -> None:
        self.sock = sock
        self.interval_s = interval_s
        self.conn = sqlite3.connect(db_path, isolation_level=None)
        self.conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.segments: list[_Segment] = []
        self.inbox = b""
        self.closing = False
        self.parent_gone = False
        self.flush_asked = False
        self.failing = False
        self.rows_last_pass = 0
        self.passes = 0

    # messages ----------------------------------------------------------------
    def _receive(self) -> None:
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.parent_gone = True
            return
        self.inbox += data
        *lines, self.inbox = self.inbox.split(b"\n")
        for line in lines:
            if line:
                self._handle(orjson.loads(line))

    def _handle(self, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        if op == "segment":
            if self.segments and self.segments[-1].end is None and msg.get("prev_end") is not None:
                self.segments[-1].end = int(msg["prev_end"])
            try:
                fd = os.open(msg["path"], os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:  # already committed and deleted (a restart told of it late)
                return
            self.segments.append(_Segment(int(msg["index"]), msg["path"], fd, int(msg.get("start") or 0),
                                          None if msg.get("end") is None else int(msg["end"])))
        elif op == "flush":
            self.flush_asked = True
        elif op == "close":
            if self.segments and self.segments[-1].end is None and msg.get("end") is not None:
                self.segments[-1].end = int(msg["end"])
            self.closing = True

    def _send(self, msg: dict[str, Any]) -> None:
        if self.parent_gone:
            return
        try:
            self.sock.sendall(orjson.dumps(msg, option=orjson.OPT_APPEND_NEWLINE))
        except OSError:
            self.parent_gone = True

    # committing --------------------------------------------------------------
    def _collect(self) -> tuple[list[tuple[Any, ...]], list[tuple[_Segment, int]]]:
        """Whole rows not yet committed, oldest segment first, and each segment's offset after them."""
        rows: list[tuple[Any, ...]] = []
        moves: list[tuple[_Segment, int]] = []
        for seg in self.segments:
            off = seg.off
            while len(rows) < MAX_ROWS:
                want = READ_BYTES if seg.end is None else min(READ_BYTES, seg.end - off)
                if want <= 0:
                    break
                data = complete_lines(os.pread(seg.fd, want, off))
                if not data:
                    break
                rows.extend(seg.decoder.rows(data))
                off += len(data)
            moves.append((seg, off))
            if len(rows) >= MAX_ROWS or (seg.end is None or off < seg.end):
                break  # a later segment's rows wait until this one is finished: order is kept
        return rows, moves

    def commit_ready(self) -> bool:
        """Commit what can be read now; False if the database refused (the rows are kept)."""
        self.passes += 1
        self.rows_last_pass = 0
        while True:
            rows, moves = self._collect()
            t0 = time.perf_counter()
            if rows:
                try:
                    self._insert(rows)
                except sqlite3.Error as exc:
                    if not self.failing:
                        log.error("usage committer: commit of %d rows failed (%s); retrying", len(rows), exc)
                    self.failing = True
                    self._send({"error": str(exc)})
                    return False
                if self.failing:
                    log.warning("usage committer: commits work again")
                    self.failing = False
            for seg, off in moves:
                seg.off = off
            self.rows_last_pass += len(rows)
            self._retire()
            if rows or self.flush_asked:
                self.flush_asked = False
                self._send({"at": self.position(), "rows": len(rows), "s": round(time.perf_counter() - t0, 6)})
            if len(rows) < MAX_ROWS:
                return True

    def _insert(self, rows: list[tuple[Any, ...]]) -> None:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in insert_statements(rows):
                conn.execute(sql, params)
            conn.execute("COMMIT")
        except BaseException:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise

    def _retire(self) -> None:
        """Delete finished segments the gateway has moved on from (the last one is the gateway's to delete)."""
        while len(self.segments) > 1 and self.segments[0].done:
            seg = self.segments.pop(0)
            os.close(seg.fd)
            try:
                os.unlink(seg.path)
            except FileNotFoundError:
                pass
            except OSError as exc:  # the next start replays it: nothing lost, nothing doubled
                log.warning("usage committer: cannot delete %s: %s", os.path.basename(seg.path), exc)

    def position(self) -> list[int]:
        if not self.segments:
            return [0, 0]
        seg = self.segments[0]
        return [seg.index, seg.off]

    # main loop ---------------------------------------------------------------
    def next_pause(self, ok: bool, pause: float) -> float:
        """The pause after a pass: the interval while rows come; doubling up to ``IDLE_MAX_S`` while
        passes find none (an idle gateway's committer wakes 4 times a second, not 50; a read that
        needs the rows sends ``flush``, which wakes it at once); ``RETRY_PAUSE_S`` after a refusal."""
        if not ok:
            return RETRY_PAUSE_S
        if self.rows_last_pass:
            return self.interval_s
        return min(max(pause * 2, self.interval_s), max(IDLE_MAX_S, self.interval_s))

    def _flush_now(self) -> bool:
        """A flush is answered at once, except while the database refuses: then the retry pause holds
        (a read waiting on a failing disk must not turn the committer into a busy loop)."""
        return self.flush_asked and not self.failing

    def run(self) -> int:
        # poll, not select: the socket keeps the gateway's fd number, which is above select's 1024 limit
        # once the gateway holds that many connections (a committer restarted then would crash at once)
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        pause = self.interval_s
        due = time.monotonic() + pause
        while not (self.closing or self.parent_gone):
            wait = due - time.monotonic()
            if wait > 0 and not self._flush_now():
                if poller.poll(math.ceil(wait * 1000)):
                    self._receive()
            if time.monotonic() >= due or self._flush_now() or self.closing or self.parent_gone:
                ok = self.commit_ready()
                pause = self.next_pause(ok, pause)
                due = time.monotonic() + pause
        return self._finish()

    def _finish(self) -> int:
        if self.closing:  # one attempt: the gateway, waiting, commits what is left itself if this fails
            done = self.commit_ready() and all(seg.done for seg in self.segments)
            self._send({"at": self.position(), "rows": 0, "s": 0, "closed": done})
        else:
            done = self._adopt_dead()
        self.conn.close()
        return 0 if done else 1

    def _commit_with_retries(self) -> bool:
        for attempt in range(DEAD_ATTEMPTS):
            if self.commit_ready():
                return True
            time.sleep(RETRY_PAUSE_S * (attempt + 1))
        return False

    def _adopt_dead(self) -> bool:
        """The gateway went away without a close (killed): commit every whole row it wrote (a torn last
        one was never acknowledged), then delete its segments, unless another process holds the last one
        (a new gateway replaying it: it deletes it itself)."""
        if not self._commit_with_retries():
            return False
        if self.segments:
            if not _lock_within(self.segments[-1].fd, DEAD_LOCK_WAIT_S):
                return True
            for seg in self.segments:
                try:
                    os.unlink(seg.path)
                except OSError:
                    pass
                os.close(seg.fd)
            self.segments = []
        return True


def _lock_within(fd: int, seconds: float) -> bool:
    """Take the segment's lock. A dying process closes its files one by one: the socket may close (what
    told us) a moment before the segment's lock goes, so wait a little before deciding someone holds it."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)


def _lower_priority(nice: int) -> None:
    if nice > 0 and hasattr(os, "nice"):
        try:
            os.nice(nice)
        except OSError:
            pass


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", required=True)
    p.add_argument("--fd", type=int, required=True, help="this end of the socket pair")
    p.add_argument("--interval-ms", type=float, default=DEFAULT_INTERVAL_MS)
    p.add_argument("--busy-timeout-ms", type=int, default=5000)
    p.add_argument("--nice", type=int, default=0)
    args = p.parse_args(argv)
    configure_logging()  # the gateway's format and level (LOG_FORMAT, LOG_LEVEL are inherited)
    _lower_priority(args.nice)
    sock = socket.socket(fileno=args.fd)
    sock.setblocking(False)
    return _Loop(sock, args.db, args.interval_ms / 1000, args.busy_timeout_ms).run()


# -- the gateway's side -----------------------------------------------------------------------------

AckListener = Callable[[int, float], None]  # (rows committed, seconds the commit took)


class Committer:
    """The gateway's handle on its committer process: starts it, tells it about segments, restarts it
    if it dies, and knows the last position it confirmed (``acked``)."""

    def __init__(self, db_path: str, *, interval_s: float, nice: int, busy_timeout_ms: int = 5000,
                 on_commit: AckListener | None = None) -> None:
        self.db_path = db_path
        self.interval_s = interval_s
        self.nice = nice
        self.busy_timeout_ms = busy_timeout_ms
        self.on_commit = on_commit
        self.acked: tuple[int, int] = (0, 0)
        self.rows = 0                 # rows confirmed committed
        self.restarts = 0
        self.failing = False
        self._segments: list[dict[str, Any]] = []  # segments not yet confirmed finished, as told to the child
        self._popen: subprocess.Popen[bytes] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._restart_task: asyncio.Task[None] | None = None
        self._waiters: list[tuple[tuple[int, int], asyncio.Future[None]]] = []
        self._closing = False
        self._closed_clean = False
        self._exited: asyncio.Event = asyncio.Event()

    async def start(self, index: int, path: Path) -> None:
        self._segments = [{"op": "segment", "index": index, "path": str(path), "start": 0, "end": None}]
        await self._spawn()

    async def _spawn(self) -> None:
        parent, child = socket.socketpair()
        try:
            self._popen = subprocess.Popen(
                [sys.executable, "-m", "gateway.usage_committer", "--db", self.db_path, "--fd", str(child.fileno()),
                 "--interval-ms", str(self.interval_s * 1000), "--busy-timeout-ms", str(self.busy_timeout_ms),
                 "--nice", str(self.nice)],
                pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL, close_fds=True)
        finally:
            child.close()
        parent.setblocking(False)
        reader, self._writer = await asyncio.open_connection(sock=parent)
        self._exited.clear()
        for msg in self._segments:
            start = self.acked[1] if msg["index"] == self.acked[0] else msg["start"]
            self._send({**msg, "start": start, "prev_end": None})
        if self._waiters:  # reads that asked the one before
            self._send({"op": "flush"})
        self._reader_task = asyncio.create_task(self._read(reader), name="usage-committer")

    def _send(self, msg: dict[str, Any]) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(orjson.dumps(msg, option=orjson.OPT_APPEND_NEWLINE))

    def rotated(self, old_end: int, index: int, path: Path) -> None:
        """The gateway's journal moved to a new segment; the old one ends at ``old_end``."""
        if self._segments:
            self._segments[-1]["end"] = old_end
        msg = {"op": "segment", "index": index, "path": str(path), "start": 0, "end": None}
        self._segments.append(msg)
        self._send({**msg, "prev_end": old_end})

    async def wait_for(self, target: tuple[int, int], timeout: float | None) -> bool:
        """Wait until every row written before ``target`` is committed; False on timeout."""
        if self.acked >= target:
            return True
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((target, fut))
        self._send({"op": "flush"})
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                self._on_message(orjson.loads(line))
        except (ConnectionError, orjson.JSONDecodeError):
            pass
        except asyncio.CancelledError:  # the loop is going away: the child sees the socket close and finishes
            if self._writer is not None:
                self._writer.close()
            raise
        if self._writer is not None:
            self._writer.close()
        popen = self._popen
        code = None
        if popen is not None:  # reap it (off the loop: it may take a moment to exit)
            code = await asyncio.get_running_loop().run_in_executor(None, popen.wait)
        self._exited.set()
        if not self._closing:
            self._restart_task = asyncio.get_running_loop().create_task(self._restart(code), name="usage-committer-restart")

    def _on_message(self, msg: dict[str, Any]) -> None:
        if "error" in msg:
            self.failing = True
            return
        self.failing = False
        at = tuple(msg["at"])
        if at > self.acked and at != (0, 0):
            self.acked = at  # type: ignore[assignment]
        while len(self._segments) > 1 and self._segments[0]["index"] < self.acked[0]:
            self._segments.pop(0)
        self.rows += msg.get("rows", 0)
        if msg.get("closed"):
            self._closed_clean = True
        if self.on_commit is not None and msg.get("rows"):
            self.on_commit(msg["rows"], msg.get("s", 0.0))
        if self._waiters:
            waiting = []
            for target, fut in self._waiters:
                if self.acked >= target or self._closed_clean:
                    if not fut.done():
                        fut.set_result(None)
                else:
                    waiting.append((target, fut))
            self._waiters = waiting

    async def _restart(self, code: int | None) -> None:
        delay = RESTART_DELAYS[min(self.restarts, len(RESTART_DELAYS) - 1)]
        log.error("usage committer exited (code %s); starting another in %.1f s (rows wait in the journal)", code, delay)
        self.restarts += 1
        await asyncio.sleep(delay)
        if not self._closing:
            try:
                await self._spawn()
            except Exception:
                log.exception("usage committer: cannot start")
                self._restart_task = asyncio.get_running_loop().create_task(self._restart(None))

    async def close(self, end: int, timeout: float = 30.0) -> bool:
        """Commit up to ``end`` of the current segment and stop. True if every row is committed."""
        self._closing = True
        self._send({"op": "close", "end": end})
        try:
            await asyncio.wait_for(self._exited.wait(), timeout)
        except asyncio.TimeoutError:
            log.error("usage committer did not finish in %.0f s; its rows stay in the journal", timeout)
            if self._popen is not None:
                self._popen.kill()
        for task in (self._reader_task, self._restart_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        for _, fut in self._waiters:
            if not fut.done():
                fut.set_result(None)
        self._waiters = []
        return self._closed_clean

    def pending_paths(self) -> list[Path]:
        """Segments not yet confirmed finished, oldest first."""
        return [Path(m["path"]) for m in self._segments]

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None


if __name__ == "__main__":
    sys.exit(main())
