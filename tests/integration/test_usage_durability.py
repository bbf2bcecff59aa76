"""Usage durability against a real gateway process (RELIABILITY.md D1/D2).

An *acknowledged* request is one whose response the client received completely: the
whole JSON body, or ``data: [DONE]`` for a stream. The gateway makes the usage row durable
before that last byte (by default in its usage journal, committed to SQLite right after;
with ``WATCHLLM_USAGE_ACK=commit`` in SQLite itself), so:

* ``kill -9`` at any point under load: every acknowledged request has its row;
* SIGTERM under load: in-flight requests drain and every one of them has its row, and
  the process exits 0.
"""
from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import time
from pathlib import Path

import aiohttp
import psutil

from gateway.usage_journal import journal_dir

from tests.fixtures.gateway import base_config

TOTAL = 2000
CONCURRENCY = 20
BODY = {"model": "mock", "messages": [{"role": "user", "content": "durable please"}]}


async def _load(url: str, *, stop_after: int, act, stream_headers: dict[str, str] | None = None) -> tuple[set[str], int]:
    """Send up to TOTAL requests with CONCURRENCY workers; call ``act()`` once ``stop_after`` are acked.

    Returns (acknowledged request ids, failures seen after the act)."""
    acked: set[str] = set()
    failures = 0
    next_i = 0
    fired = asyncio.Event()
    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as s:
        async def one(i: int) -> None:
            nonlocal failures
            stream = i % 3 == 0
            try:
                async with s.post(f"{url}/v1/chat/completions", json={**BODY, "stream": stream},
                                  headers=(stream_headers or {}) if stream else {}) as r:
                    rid = r.headers.get("x-request-id")
                    data = await r.read()
                    if r.status != 200 or not rid:
                        failures += 1
                        return
                    if stream and not data.rstrip().endswith(b"data: [DONE]"):
                        failures += 1
                        return
                    if not stream and not data.endswith(b"}"):
                        failures += 1
                        return
                    acked.add(rid)
            except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError):
                failures += 1
            if len(acked) >= stop_after and not fired.is_set():
                fired.set()
                act()

        async def worker() -> None:
            nonlocal next_i
            while next_i < TOTAL:
                i, next_i = next_i, next_i + 1
                await one(i)
                if fired.is_set() and failures > CONCURRENCY * 3:
                    return  # the server is gone; stop hammering a closed port

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return acked, failures


async def _replay(db_path: Path) -> int:
    from gateway.store import Store
    from gateway.usage_journal import journal_dir, replay_journal

    store = await Store(f"sqlite:///{db_path}").open()
    try:
        return await replay_journal(store, journal_dir(db_path))
    finally:
        await store.close()


def _rows(db_path: Path) -> set[str]:
    """The usage rows as the next gateway start sees them: its journal replayed, its WAL applied."""
    replayed = asyncio.run(_replay(db_path))
    if replayed:
        print(f"  replayed {replayed} journalled rows")
    db = sqlite3.connect(db_path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return {r[0] for r in db.execute("SELECT id FROM usage")}
    finally:
        db.close()


def _committers(db_path: Path) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if "gateway.usage_committer" in cmd and str(db_path) in cmd:
            out.append(p)
    return out


def _wait_committers_gone(db_path: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while _committers(db_path):
        assert time.monotonic() < deadline, "the usage committer of a killed gateway did not exit"
        time.sleep(0.05)


def _committed(db_path: Path) -> set[str]:
    db = sqlite3.connect(db_path)
    try:
        return {r[0] for r in db.execute("SELECT id FROM usage")}
    finally:
        db.close()


def test_kill_9_under_load_loses_no_acknowledged_usage_row(gateway_factory, tmp_path: Path):
    started = time.monotonic()
    for trial, (kill_after, ack) in enumerate(((150, "journal"), (600, "commit"), (1200, "journal"))):
        workdir = tmp_path / f"t{trial}"
        workdir.mkdir()
        gw = gateway_factory(base_config(workdir), name=f"kill{trial}", env={"WATCHLLM_USAGE_ACK": ack})
        pid = gw.proc.pid
        acked, _ = asyncio.run(_load(gw.url, stop_after=kill_after, act=lambda: os.kill(pid, signal.SIGKILL)))
        gw.proc.wait(10)
        assert gw.proc.returncode == -signal.SIGKILL
        db_path = workdir / "watchllm.db"
        if ack == "journal":
            # The gateway's usage committer (a child process) outlives it: it commits every row the dead
            # gateway journalled, deletes the segment and exits; nothing waits for the next start.
            _wait_committers_gone(db_path)
            committed = _committed(db_path)
            assert acked <= committed, f"trial {trial}: {len(acked - committed)} acknowledged rows not committed by the committer"
            assert not list(journal_dir(db_path).glob("seg-*.jsonl")), "the committer deletes the dead gateway's segment"
        rows = _rows(db_path)
        lost = acked - rows
        assert len(acked) >= kill_after
        assert not lost, f"trial {trial}: {len(lost)} of {len(acked)} acknowledged requests have no usage row"
        print(f"kill -9 trial {trial} ({ack}): acked={len(acked)} rows={len(rows)} (rows without ack: {len(rows - acked)})")
    assert time.monotonic() - started < 60


def test_sigterm_under_load_drains_and_flushes_every_row(gateway_factory, tmp_path: Path):
    gw = gateway_factory(base_config(tmp_path, server={"host": "127.0.0.1", "port": 0, "shutdown_timeout": 10}), name="term")
    pid = gw.proc.pid
    # streams with slow chunks keep requests in flight when SIGTERM lands
    acked, _ = asyncio.run(_load(gw.url, stop_after=800, act=lambda: os.kill(pid, signal.SIGTERM),
                                 stream_headers={"x-mock-chunk-delay-ms": "25"}))
    assert gw.proc.wait(30) == 0
    rows = _rows(tmp_path / "watchllm.db")
    assert len(acked) >= 800
    assert acked <= rows, f"{len(acked - rows)} acknowledged requests have no usage row after SIGTERM"
    # every request the gateway accepted was answered in the drain: no row without a complete response
    assert rows - acked == set(), f"{len(rows - acked)} rows for responses the client did not fully receive"
    print(f"SIGTERM: acked={len(acked)} rows={len(rows)}")
