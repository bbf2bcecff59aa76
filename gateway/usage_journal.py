"""The usage journal: a request's usage row is durable once it is in this file, before SQLite has it.

Why: committing to SQLite before the last byte (``WATCHLLM_USAGE_ACK=commit``) puts a group commit
(a thread hop, and every ~1000 pages a WAL checkpoint with two fsyncs) on every request's path. On
the benchmark machine that was the full chain's whole p99 (26–139 ms at half load; 1.7 ms with the
store in memory). Copying the row into this journal costs about a microsecond on the event loop
and gives the same promise SQLite's ``synchronous=NORMAL`` gives: once the copy is done the bytes are
in the kernel's page cache, so a killed process loses nothing (power loss may, as with
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
process dies.

How a row is written: the segment's blocks are reserved up front (``posix_fallocate``, so a full disk
shows at rotation as an ``OSError``, never as a SIGBUS mid-write) and mapped ``MAP_SHARED``; a row is
a copy into that mapping, with no system call. The pages belong to the kernel's page cache, so a row
copied in survives the process being killed exactly as a ``write(2)`` would (and, like it, not a
power cut). ``write(2)`` per row was ~7% of an exact cache hit's CPU time (an inode update per
append; py-spy). Unused space is zeros, and ``close`` trims the file to its rows. A row that does not
fit in the mapping (a burst between two rotations) is written with ``pwrite`` right after the last
one. Reading stops at the first zero byte (orjson never emits one: control characters are escaped),
and a torn or damaged last line (the process died mid-copy) was never acknowledged and is skipped.
"""
from __future__ import annotations

import fcntl
import logging
import mmap
import os
import secrets
import threading
from pathlib import Path
from typing import Any, Iterator, Sequence

import orjson

from .store.usage import COLUMN_DEFAULTS, COLUMNS

__all__ = ["UsageJournal", "RowDecoder", "complete_lines", "journal_dir", "read_rows", "replay_journal"]

log = logging.getLogger("watchllm.usage")

SEGMENT_BYTES = 4 * 1024 * 1024  # rotate after this many bytes (once its rows are committed it is deleted)
MAP_FACTOR = 2                    # the mapping holds twice that: rows keep coming between a rotation's checks
RELEASE_BYTES = 256 * 1024        # pages written this far behind the end leave this process's RSS (madvise)
REPLAY_BATCH = 1000
_HEADER = orjson.dumps({"watchllm_usage_journal": 1, "columns": list(COLUMNS)}, option=orjson.OPT_APPEND_NEWLINE)


def journal_dir(db_path: str | os.PathLike[str]) -> Path:
    p = Path(db_path)
    return p.with_name(p.name + ".usage-journal")


class UsageJournal:
    """This process's append-only segment. The event loop's thread only, except ``prepare`` and
    ``release_retired``, which do the slow file work of a rotation in a worker thread: creating a
    segment (``posix_fallocate`` of 8 MB, ``mmap``) measured 5.3 ms p50 / 17 ms max here, and unmapping
    and trimming the old one 2.3 / 4.7 ms; on the event loop that was a stall every ~3 s at 2,800
    requests/s. With a spare made ahead and the old one released behind, a rotation is a swap."""

    def __init__(self, directory: Path, *, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.path: Path | None = None
        self._fd = -1
        self._map: mmap.mmap | None = None
        self._cap = 0    # bytes mapped
        self._pos = 0    # bytes used: the header and every row so far
        self._size = 0   # row bytes in this segment (rotation)
        self._kept = 0   # mapped bytes before this offset are released from the process's resident set
        self.index = 0   # segments opened by this journal so far: (index, offset) orders every row it wrote
        self._spare: tuple[int, Path, mmap.mmap, int] | None = None  # the next segment, made ahead (prepare)
        self._preparing = False
        self._retired: list[tuple[int, mmap.mmap, int]] = []  # rotated segments to unmap, trim and close
        self._lock = threading.Lock()

    def open(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._fd, self.path, self._map, self._pos = self._new_segment()
        self._cap = len(self._map)
        self._size = self._kept = 0
        self.index += 1

    @property
    def position(self) -> tuple[int, int]:
        """(segment index, bytes written in it): where the next row goes."""
        return self.index, self._pos

    def _new_segment(self) -> tuple[int, Path, mmap.mmap, int]:
        # Lock under a temporary name, then rename: a segment is never visible unlocked.
        name = f"seg-{os.getpid()}-{secrets.token_hex(6)}"
        tmp = self.directory / f".{name}.tmp"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        mapped: mmap.mmap | None = None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            cap = max(self.segment_bytes * MAP_FACTOR, len(_HEADER) + mmap.PAGESIZE)
            os.posix_fallocate(fd, 0, cap)  # ENOSPC now, as an OSError, rather than SIGBUS on a later copy
            mapped = mmap.mmap(fd, cap, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            mapped[:len(_HEADER)] = _HEADER
            path = self.directory / f"{name}.jsonl"
            os.rename(tmp, path)
        except BaseException:
            if mapped is not None:
                mapped.close()
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        return fd, path, mapped, len(_HEADER)

    def append(self, row: Sequence[Any]) -> None:
        """Write one row; raises ``OSError`` (disk full, I/O error) if it is not in the file."""
        data = orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE)
        pos = self._pos
        end = pos + len(data)
        if end <= self._cap:
            self._map[pos:end] = data  # type: ignore[index]
            if end - self._kept >= RELEASE_BYTES:
                self._release_pages(end)
        else:  # past the mapping: carry on right after the last row, with a system call each
            n = os.pwrite(self._fd, data, pos)
            if n != len(data):  # a short write to a regular file: the disk is full
                raise OSError(f"usage journal: short write ({n} of {len(data)} bytes)")
        self._pos = end
        self._size += len(data)

    def _release_pages(self, end: int) -> None:
        """Unmap the written pages behind ``end`` from this process. They stay in the page cache (dirty
        pages of a shared file mapping are the file's, written back as usual), so nothing is lost; without
        this, a segment's touched pages count in the RSS until it rotates, a sawtooth of megabytes."""
        upto = end - end % mmap.PAGESIZE
        if upto > self._kept:
            self._map.madvise(mmap.MADV_DONTNEED, self._kept, upto - self._kept)  # type: ignore[union-attr]
            self._kept = upto

    def full(self) -> bool:
        return self._size >= self.segment_bytes

    def wants_spare(self) -> bool:
        """Half full and no next segment made or being made: time to ``prepare`` one (in a thread)."""
        if self._spare is not None or self._preparing or self._size < self.segment_bytes // 2 or self._fd < 0:
            return False
        self._preparing = True
        return True

    def prepare(self) -> None:
        """Make the next segment (thread-safe; run it off the event loop)."""
        try:
            made = self._new_segment()
            with self._lock:
                if self._spare is None and self._fd >= 0:
                    self._spare, made = made, None  # type: ignore[assignment]
            if made is not None:  # not needed after all (rotated meanwhile, or closed)
                self._drop_segment(made)
        except OSError as exc:  # the rotation will try again itself, on the loop, and report it
            log.warning("usage journal: cannot prepare the next segment: %s", exc)
        finally:
            self._preparing = False

    def rotate(self) -> Path | None:
        """Start a new segment; return the old one (delete it once its rows are committed). The old one is
        unmapped, trimmed and closed by ``release_retired`` (run it in a thread; ``close`` runs it too)."""
        if self._fd < 0:
            return None
        with self._lock:
            new, self._spare = self._spare, None
        if new is None:
            new = self._new_segment()
        old = self.path
        assert self._map is not None
        self._retired.append((self._fd, self._map, self._pos))
        self._fd, self.path, self._map, self._pos = new
        self._cap = len(self._map)
        self._size = self._kept = 0
        self.index += 1
        return old

    def release_retired(self) -> None:
        """Unmap, trim and close the rotated segments (thread-safe; run it off the event loop)."""
        while True:
            try:
                fd, mapped, used = self._retired.pop()
            except IndexError:
                return
            _close_segment(fd, mapped, used, trim=True)

    def close(self, *, delete: bool) -> None:
        """Close this process's segment; ``delete`` once every row in it is committed."""
        self.release_retired()
        if self._fd < 0:
            return
        path, self.path = self.path, None
        if delete and path is not None:
            path.unlink(missing_ok=True)
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None:
            self._drop_segment(spare)
        fd, mapped, used = self._fd, self._map, self._pos
        self._fd, self._map = -1, None
        _close_segment(fd, mapped, used, trim=not delete)

    @staticmethod
    def _drop_segment(seg: tuple[int, Path, mmap.mmap, int]) -> None:
        """A made segment that holds no row: delete it."""
        fd, path, mapped, _ = seg
        path.unlink(missing_ok=True)
        _close_segment(fd, mapped, 0, trim=False)


def _close_segment(fd: int, mapped: mmap.mmap | None, used: int, *, trim: bool) -> None:
    """Unmap and close (dropping the lock: a replay now would only re-insert committed rows)."""
    if mapped is not None:
        mapped.close()
    if trim:
        try:
            os.ftruncate(fd, used)  # a kept segment holds its rows, not the reserved zeros
        except OSError:
            pass  # the zeros are skipped when it is read
    os.close(fd)


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


def complete_lines(data: bytes) -> bytes:
    """The whole rows at the start of ``data`` (bytes read from a segment): up to the first zero byte
    (space reserved but not yet written: a row copied in part still holds zeros, whatever order the
    copy stored its bytes in) and the last newline before it."""
    end = data.find(b"\0")
    if end >= 0:
        data = data[:end]
    return data[: data.rfind(b"\n") + 1]


class RowDecoder:
    """Lines of one segment -> rows in today's column order. The header line names the columns, so a
    segment written by an older version maps by name; a damaged line is skipped (never acknowledged)."""

    def __init__(self) -> None:
        self.columns: list[str] = list(COLUMNS)
        self.current = True  # the segment's columns are today's: rows need no remapping

    def rows(self, lines: bytes) -> list[tuple[Any, ...]]:
        out: list[tuple[Any, ...]] = []
        width = len(self.columns)
        for line in lines.split(b"\n"):
            if not line:
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError:
                log.warning("usage journal: skipping a damaged line")
                continue
            if isinstance(row, list) and len(row) == width:
                out.append(tuple(row) if self.current else _remap(self.columns, row))
            elif isinstance(row, dict) and isinstance(row.get("columns"), list):
                self.columns = [str(c) for c in row["columns"]]
                self.current = tuple(self.columns) == COLUMNS
                width = len(self.columns)
            else:
                log.warning("usage journal: skipping a line that does not match its header")
        return out


def read_rows(fd: int) -> Iterator[tuple[Any, ...]]:
    """The rows of one segment in today's column order. Reading stops at the first zero byte (space
    reserved but never written); a torn or damaged line is skipped (it was never acknowledged)."""
    with os.fdopen(os.dup(fd), "rb") as f:
        data = f.read()
    yield from RowDecoder().rows(complete_lines(data))


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
