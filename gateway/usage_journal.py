"""The usage journal: a request's usage row is durable once it is in this file, before SQLite has it.

Why: committing to SQLite before the last byte (``WATCHLLM_USAGE_ACK=commit``) puts a group commit
(a thread hop, and every ~1000 pages a WAL checkpoint with two fsyncs) on every request's path. On
the benchmark machine that was the full chain's whole p99 (26–139 ms at half load; 1.7 ms with the
store in memory). Appending the row to this journal with one ``write(2)`` costs a few microseconds
on the event loop and gives the same promise SQLite's ``synchronous=NORMAL`` gives: once ``write``
returns the bytes are in the kernel, so a killed process loses nothing (power loss may, as with
``synchronous=NORMAL``). The usage writer then commits rows to SQLite in the background and deletes
a journal segment once every row in it is committed; rows of a process that died are replayed
(``INSERT OR IGNORE`` on the request id: never twice) by the next process that opens the store, or
within ``ADOPT_INTERVAL_S`` (30 s) by a sibling worker of the same server that is still running.

Layout: a directory beside the database, ``<db file>.usage-journal/``, one segment file per
writing process at a time, ``seg-<pid>-<random>.jsonl``: a header line naming the columns
(``{"watchllm_usage_journal": 1, "columns": [...]}``), then one JSON array per row in that order,
so a segment left by an older version replays into a newer schema (columns matched by name).
A live process holds an exclusive ``flock`` on its segment, so another worker of the same server
never replays (and deletes) a segment still being written; the kernel drops the lock when the
process dies. A torn last line (the process died
inside ``write``) was never acknowledged and is skipped.
"""
from __future__ import annotations

import fcntl
import logging
import os
import secrets
from pathlib import Path
from typing import Any, Iterator, Sequence

import orjson

from .store.usage import COLUMN_DEFAULTS, COLUMNS

__all__ = ["UsageJournal", "journal_dir", "replay_journal"]

log = logging.getLogger("watchllm.usage")

SEGMENT_BYTES = 8 * 1024 * 1024  # rotate after this many bytes (once its rows are committed it is deleted)
REPLAY_BATCH = 1000
_HEADER = orjson.dumps({"watchllm_usage_journal": 1, "columns": list(COLUMNS)}, option=orjson.OPT_APPEND_NEWLINE)


def journal_dir(db_path: str | os.PathLike[str]) -> Path:
    p = Path(db_path)
    return p.with_name(p.name + ".usage-journal")


class UsageJournal:
    """This process's append-only segment. Not thread-safe: the event loop's thread only."""

    def __init__(self, directory: Path, *, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.path: Path | None = None
        self._fd = -1
        self._size = 0

    def open(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._fd, self.path = self._new_segment()
        self._size = 0

    def _new_segment(self) -> tuple[int, Path]:
        # Lock under a temporary name, then rename: a segment is never visible unlocked.
        name = f"seg-{os.getpid()}-{secrets.token_hex(6)}"
        tmp = self.directory / f".{name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.write(fd, _HEADER)
            path = self.directory / f"{name}.jsonl"
            os.rename(tmp, path)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        return fd, path

    def append(self, row: Sequence[Any]) -> None:
        """Write one row; raises ``OSError`` (disk full, I/O error) if it is not in the file."""
        data = orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE)
        n = os.write(self._fd, data)
        if n != len(data):  # a short write to a regular file: the disk is full
            raise OSError(f"usage journal: short write ({n} of {len(data)} bytes)")
        self._size += n

    def full(self) -> bool:
        return self._size >= self.segment_bytes

    def rotate(self) -> Path | None:
        """Start a new segment; return the old one (delete it once its rows are committed)."""
        if self._fd < 0:
            return None
        old_fd, old = self._fd, self.path
        self._fd, self.path = self._new_segment()
        self._size = 0
        os.close(old_fd)  # drops the lock: a replay of it now would only re-insert committed rows
        return old

    def close(self, *, delete: bool) -> None:
        """Close this process's segment; ``delete`` once every row in it is committed."""
        if self._fd < 0:
            return
        path, self.path = self.path, None
        if delete and path is not None:
            path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = -1


def _unlocked_segments(directory: Path) -> Iterator[tuple[Path, int]]:
    """Segments no live process holds (their writer died or closed), each with a lock taken."""
    if not directory.is_dir():
        return
    for path in sorted(directory.glob("seg-*.jsonl")):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:  # another process replayed it meanwhile
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a live writer
            os.close(fd)
            continue
        yield path, fd


def read_rows(fd: int) -> Iterator[tuple[Any, ...]]:
    """The rows of one segment in today's column order; a torn or damaged line is skipped (it was
    never acknowledged)."""
    columns: list[str] = list(COLUMNS)
    current = True  # the segment's columns are today's: rows need no remapping
    with os.fdopen(os.dup(fd), "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                break
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError:
                log.warning("usage journal: skipping a damaged line")
                continue
            if isinstance(row, dict) and isinstance(row.get("columns"), list):
                columns = [str(c) for c in row["columns"]]
                current = tuple(columns) == COLUMNS
            elif isinstance(row, list) and len(row) == len(columns):
                yield tuple(row) if current else _remap(columns, row)
            else:
                log.warning("usage journal: skipping a line that does not match its header")


def _remap(columns: list[str], row: list[Any]) -> tuple[Any, ...]:
    by_name = {**COLUMN_DEFAULTS, **dict(zip(columns, row))}
    return tuple(by_name.get(c) for c in COLUMNS)


async def replay_journal(store: Any, directory: Path) -> int:
    """Commit the rows of every segment no live process holds, then delete those segments."""
    total = 0
    for path, fd in _unlocked_segments(directory):
        try:
            total += await _replay_segment(store, path, fd)
        except Exception as exc:  # the database refused: keep the file, a later pass retries it
            log.error("usage journal: replaying %s failed (%s); it is kept for the next attempt", path.name, exc)
        finally:
            os.close(fd)
    if total:
        log.warning("usage journal: re-applied %d rows journalled by a process that stopped "
                    "(rows it had committed are skipped)", total)
    return total


async def _replay_segment(store: Any, path: Path, fd: int) -> int:
    total = 0
    batch: list[tuple[Any, ...]] = []
    for row in read_rows(fd):
        batch.append(row)
        if len(batch) >= REPLAY_BATCH:
            await store.usage.insert_many(batch)
            total += len(batch)
            batch = []
    if batch:
        await store.usage.insert_many(batch)
        total += len(batch)
    path.unlink(missing_ok=True)
    return total
