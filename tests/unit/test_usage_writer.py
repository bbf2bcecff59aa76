"""UsageWriter: durable before return (journal or commit), group commit, idempotence, journal replay
after a crash, flush on close, retention."""
from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from gateway.call import ApiKeyInfo, Project, Usage
from gateway.errors import GatewayError
from gateway.reply import Outcome
from gateway.store import Store
from gateway.testing import make_call
from gateway import usage as usage_mod
from gateway.usage import UsageWriter, ack_from_env, retention_from_env
from gateway.usage_journal import UsageJournal, journal_dir, replay_journal


@pytest.fixture
async def store(tmp_path: Path):
    s = await Store(f"sqlite:///{tmp_path / 'u.db'}").open()
    yield s
    await s.close()


def _call(i: int = 0, project: str = "proj_a"):
    call = make_call({"model": "mock", "messages": [{"role": "user", "content": f"hi {i}"}]},
                     project=Project(id=project), key=ApiKeyInfo(id="key_1", project_id=project))
    call.facts.provider, call.facts.model_served, call.facts.attempts = "mock", "mock-1", 1
    return call


def _ok(cost: int = 7) -> Outcome:
    return Outcome(status=200, ended="complete", usage=Usage(prompt_tokens=5, completion_tokens=3, total_tokens=8), cost_micros=cost)


async def _count(store: Store) -> int:
    return (await store.fetchone("SELECT COUNT(*) FROM usage"))[0]


def _segments(store: Store) -> list[Path]:
    return sorted(journal_dir(store.path).glob("seg-*.jsonl"))


def _written(path: Path) -> bytes:
    """A live segment's rows: the bytes before its reserved zeros (read up to them, not the whole 8 MB)."""
    out = b""
    with open(path, "rb") as f:
        while chunk := f.read(1 << 16):
            if b"\0" in chunk:
                return out + chunk[:chunk.index(b"\0")]
            out += chunk
    return out


def _journalled_ids(store: Store) -> set[str]:
    import orjson
    lines = [orjson.loads(line) for seg in _segments(store) for line in _written(seg).splitlines()]
    return {row[0] for row in lines if isinstance(row, list)}  # after each segment's header line


def _rows_in(path: Path) -> list[tuple]:
    from gateway.usage_journal import read_rows
    fd = os.open(path, os.O_RDONLY)
    try:
        return list(read_rows(fd))
    finally:
        os.close(fd)


def _die(journal: UsageJournal) -> None:
    """What a kill -9 leaves: the mapping's pages in the file, no trim, the lock gone with the process."""
    journal._map.close()
    os.close(journal._fd)


async def test_commit_mode_rows_share_commits_and_are_committed_on_return(store):
    writer = UsageWriter(store, ack="commit")
    await writer.start()
    calls = [_call(i) for i in range(500)]

    async def one(c):
        await writer.record(c, _ok())
        # durable on return: the row is visible to another connection right away
        import sqlite3
        with sqlite3.connect(store.path) as other:
            assert other.execute("SELECT 1 FROM usage WHERE id = ?", (c.id,)).fetchone() is not None

    await asyncio.gather(*(one(c) for c in calls))
    assert await _count(store) == 500
    assert writer.commits < 100, f"group commit expected, got {writer.commits} commits for 500 rows"
    row = dict(await store.fetchone("SELECT * FROM usage WHERE id = ?", (calls[0].id,)))
    assert row["project_id"] == "proj_a" and row["key_id"] == "key_1" and row["model_requested"] == "mock"
    assert (row["prompt_tokens"], row["completion_tokens"], row["cost_micros"], row["status"]) == (5, 3, 7, 200)
    assert row["provider"] == "mock" and row["model_served"] == "mock-1" and row["ended"] == "complete"
    await writer.close()


async def test_journal_mode_row_is_in_the_journal_on_return_and_committed_in_batches(store):
    writer = UsageWriter(store)
    assert writer.ack == "journal"
    await writer.start()
    calls = [_call(i) for i in range(500)]

    async def one(c):
        await writer.record(c, _ok())
        assert c.id in _journalled_ids(store)  # durable on return: in the file a restart replays

    await asyncio.gather(*(one(c) for c in calls))
    assert await writer.flush(timeout=5)
    assert await _count(store) == 500
    assert writer.commits < 100, f"group commit expected, got {writer.commits} commits for 500 rows"
    await writer.close()
    assert _segments(store) == []  # every row committed: nothing left to replay


@pytest.mark.parametrize("ack", ["journal", "commit"])
async def test_same_request_id_twice_is_one_row(store, ack):
    writer = UsageWriter(store, ack=ack)
    await writer.start()
    c = _call()
    await writer.record(c, _ok(cost=1))
    await writer.record(c, _ok(cost=2))
    await writer.flush()
    assert await _count(store) == 1
    assert (await store.fetchone("SELECT cost_micros FROM usage"))[0] == 1
    await writer.close()


@pytest.mark.parametrize("ack", ["journal", "commit"])
async def test_close_commits_everything_still_queued(store, ack):
    writer = UsageWriter(store, ack=ack)
    await writer.start()
    tasks = [asyncio.ensure_future(writer.record(_call(i), _ok())) for i in range(300)]
    await asyncio.sleep(0)  # queued, not yet committed
    await writer.close()
    await asyncio.gather(*tasks)
    assert await _count(store) == 300
    assert _segments(store) == []
    # a record after close is written directly, not lost
    await writer.record(_call(999), _ok())
    assert await _count(store) == 301


async def test_error_outcome_records_code_and_dlp_counts(store):
    writer = UsageWriter(store)
    await writer.start()
    c = _call()
    c.facts.dlp_findings = {"email": 2}
    await writer.record(c, Outcome(status=429, ended="error", error=GatewayError("rate_limit_exceeded", "slow down")))
    await writer.flush()
    row = dict(await store.fetchone("SELECT * FROM usage"))
    assert row["status"] == 429 and row["error_code"] == "rate_limit_exceeded" and row["dlp_findings"] == '{"email":2}'
    await writer.close()


async def test_commit_mode_failed_commit_is_retried_then_reported_to_the_waiter(store):
    writer = UsageWriter(store, retry_delays=(0.001, 0.001), ack="commit")
    await writer.start()
    real = store.usage.insert_many
    fails = {"n": 2}

    async def flaky(rows):
        if fails["n"]:
            fails["n"] -= 1
            raise RuntimeError("database is locked")
        await real(rows)

    store.usage.insert_many = flaky
    await writer.record(_call(1), _ok())  # two failures, third attempt commits
    assert await _count(store) == 1
    fails["n"] = 10
    with pytest.raises(RuntimeError):
        await writer.record(_call(2), _ok())
    assert writer.failures == 1
    store.usage.insert_many = real
    await writer.close()


async def test_purge_deletes_only_rows_past_retention(store):
    writer = UsageWriter(store, retention_s=86400)
    old, new = _call(1), _call(2)
    old.created_at = time.time() - 2 * 86400
    await writer.start()
    await writer.record(old, _ok())
    await writer.record(new, _ok())
    await writer.flush()
    assert await writer.purge_once() == 1
    assert [r[0] for r in await store.fetchall("SELECT id FROM usage")] == [new.id]
    await writer.close()


def test_retention_env_parsing():
    assert retention_from_env({}) == (None, 3600.0)
    assert retention_from_env({"WATCHLLM_USAGE_RETENTION_DAYS": "30"}) == (30 * 86400, 3600.0)
    assert retention_from_env({"WATCHLLM_USAGE_RETENTION_DAYS": "0", "WATCHLLM_USAGE_PURGE_INTERVAL_S": "60"}) == (None, 60.0)
    with pytest.raises(ValueError):
        retention_from_env({"WATCHLLM_USAGE_RETENTION_DAYS": "thirty"})


async def _database_fails(store: Store, on: bool) -> None:
    """A real failure every connection sees, this process's and the committer process's alike."""
    if on:
        await store.execute("CREATE TRIGGER usage_down BEFORE INSERT ON usage "
                            "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END")
    else:
        await store.execute("DROP TRIGGER usage_down")


@pytest.mark.parametrize("committer", ["process", "inline"])
async def test_journal_mode_keeps_acknowledged_rows_through_a_failing_database(store, monkeypatch, committer):
    monkeypatch.setattr(usage_mod, "RETRY_PAUSE_S", 0.01)
    writer = UsageWriter(store, retry_delays=(0.001,), committer=committer)
    await writer.start()
    await _database_fails(store, True)
    calls = [_call(i) for i in range(20)]
    for c in calls:
        await writer.record(c, _ok())  # acknowledged: in the journal
    assert await writer.flush(timeout=0.3) is False  # not committed while the database fails
    assert {c.id for c in calls} <= _journalled_ids(store)
    for _ in range(500):  # the committer process may still be starting (~0.4 s of imports on a cold box)
        if (writer.failures > 0 if committer == "inline" else writer._committer.failing):
            break
        await asyncio.sleep(0.01)
    assert writer.failures > 0 if committer == "inline" else writer._committer.failing
    if committer == "process":  # a read waiting on a failing database does not make the committer spin
        errors = []
        real = writer._committer._on_message
        writer._committer._on_message = lambda msg: (errors.append(msg) if "error" in msg else None, real(msg))
        assert await writer.flush(timeout=0.5) is False
        assert len(errors) <= 2, f"{len(errors)} failed commits in 0.5 s: the retry pause did not hold"
        writer._committer._on_message = real
    await _database_fails(store, False)
    assert await writer.flush(timeout=5)
    assert await _count(store) == 20
    await writer.close()
    assert _segments(store) == []


async def test_rows_left_in_the_journal_by_a_dead_process_are_replayed_once(store):
    # A process that journalled three rows and died before committing them (one line torn by the kill).
    dead = UsageJournal(journal_dir(store.path))
    dead.open()
    from gateway.usage import usage_row
    rows = [usage_row(_call(i), _ok()) for i in range(3)]
    for row in rows:
        dead.append(row)
    # The kill came inside the copy of a fourth row, never acknowledged: memcpy may store the tail
    # (the newline) before the middle, so the torn line can end in a newline with zeros inside.
    torn = b'["torn-row", "proj' + b"\0" * 16 + b'"]\n'
    dead._map[dead._pos:dead._pos + len(torn)] = torn
    # A live writer's segment is not touched while its process holds it.
    assert await replay_journal(store, journal_dir(store.path)) == 0
    path = dead.path
    _die(dead)
    assert path.stat().st_size > 4096, "a dead process's segment still holds its reserved zeros"

    writer = UsageWriter(store)
    await writer.start()  # replays before serving
    assert writer.replayed == 3
    ids = {r[0] for r in await store.fetchall("SELECT id FROM usage")}
    assert ids == {row[0] for row in rows}
    await writer.record(_call(7), _ok())
    await writer.close()
    again = UsageWriter(store)
    await again.start()
    assert again.replayed == 0 and await _count(store) == 4
    await again.close()
    assert _segments(store) == []


def test_rows_past_the_mapping_follow_the_last_row_and_a_kept_segment_is_trimmed(tmp_path):
    from gateway.usage import usage_row
    journal = UsageJournal(tmp_path / "j", segment_bytes=2048)  # maps 4 KiB: ~15 rows, then pwrite
    journal.open()
    rows = [usage_row(_call(i), _ok()) for i in range(60)]
    for row in rows:
        journal.append(row)
    assert journal._pos > journal._cap, "the test must go past the mapping"
    path, used = journal.path, journal._pos
    assert [r[0] for r in _rows_in(path)] == [r[0] for r in rows]  # while live, in order
    journal.close(delete=False)
    assert path.stat().st_size == used  # no reserved zeros left in a closed segment
    assert [r[0] for r in _rows_in(path)] == [r[0] for r in rows]


def test_rows_behind_the_end_leave_the_resident_set_and_stay_in_the_file(tmp_path):
    from gateway.usage_journal import RELEASE_BYTES
    from gateway.usage import usage_row
    journal = UsageJournal(tmp_path / "j")
    journal.open()
    rows = [usage_row(_call(i), _ok()) for i in range(5000)]  # ~1.2 MB: several releases
    for row in rows:
        journal.append(row)
    assert journal._kept >= 3 * RELEASE_BYTES

    def mapped_rss_kb() -> int:
        lines = Path("/proc/self/smaps").read_text().splitlines()
        for i, line in enumerate(lines):
            if line.endswith(str(journal.path)):
                return next(int(x.split()[1]) for x in lines[i + 1:] if x.startswith("Rss:"))
        raise AssertionError("segment not mapped")

    assert mapped_rss_kb() * 1024 <= RELEASE_BYTES + 8192  # only the pages not yet released
    assert [r[0] for r in _rows_in(journal.path)] == [r[0] for r in rows]  # released pages kept their rows
    path = journal.path
    _die(journal)  # and a kill keeps them too
    assert len(_rows_in(path)) == 5000


async def test_a_disk_too_full_for_a_segment_starts_in_commit_mode(store, monkeypatch):
    import errno

    def no_space(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    writer = UsageWriter(store)
    await writer.start()  # the gateway still starts
    assert writer.ack == "commit" and writer.journal is None
    await writer.record(_call(1), _ok())
    assert await _count(store) == 1  # acknowledged after its commit
    assert _segments(store) == []
    await writer.close()


@pytest.mark.parametrize("committer", ["process", "inline"])
async def test_full_segments_are_rotated_and_deleted_once_committed(store, committer):
    writer = UsageWriter(store, journal_segment_bytes=4096, committer=committer)
    await writer.start()
    for i in range(200):
        await writer.record(_call(i), _ok())
        if i % 10 == 0:
            await asyncio.sleep(0)
    assert await writer.flush(timeout=5)
    await writer.record(_call(1000), _ok())  # the next batch rotates the (full) segment
    assert await writer.flush(timeout=5)
    def live() -> set[Path]:  # the segment being written, and the next one if it was made ahead
        spare = writer.journal._spare
        return {writer.journal.path} | ({spare[1]} if spare else set())

    for _ in range(100):  # deleted off the event loop (or by the committer process)
        if set(_segments(store)) == live():
            break
        await asyncio.sleep(0.01)
    assert set(_segments(store)) == live(), "committed segments are deleted; only the live one is left"
    assert writer.journal.index >= 2, "the test must rotate"
    assert await _count(store) == 201
    await writer.close()
    assert _segments(store) == []


@pytest.mark.parametrize("committer", ["process", "inline"])
async def test_closing_with_the_database_down_leaves_rows_for_the_next_start(store, monkeypatch, committer):
    monkeypatch.setattr(usage_mod, "RETRY_PAUSE_S", 0.01)
    writer = UsageWriter(store, retry_delays=(0.001,), committer=committer)
    await writer.start()
    await _database_fails(store, True)
    calls = [_call(i) for i in range(5)]
    for c in calls:
        await writer.record(c, _ok())
    await writer.close()
    assert len(_segments(store)) == 1
    await _database_fails(store, False)
    nxt = UsageWriter(store)
    await nxt.start()
    assert nxt.replayed == 5 and await _count(store) == 5
    await nxt.close()


async def test_rows_are_committed_by_a_child_process_that_is_restarted_when_killed(store):
    import signal
    writer = UsageWriter(store)
    assert writer.committer_mode == "process"
    await writer.start()
    first = writer._committer.pid
    assert first is not None and first != os.getpid()
    await writer.record(_call(1), _ok())
    assert await writer.flush(timeout=5) and await _count(store) == 1
    os.kill(first, signal.SIGKILL)
    await writer.record(_call(2), _ok())  # acknowledged while no committer runs: it waits in the journal
    assert await writer.flush(timeout=10), "a new committer takes over from the last confirmed position"
    assert writer._committer.pid != first and writer._committer.restarts == 1
    assert await _count(store) == 2
    await writer.close()
    assert _segments(store) == []


async def test_close_commits_in_process_what_a_dead_committer_left(store, monkeypatch):
    import signal
    from gateway import usage_committer
    monkeypatch.setattr(usage_committer, "RESTART_DELAYS", (30.0,))  # it stays dead until close
    writer = UsageWriter(store)
    await writer.start()
    os.kill(writer._committer.pid, signal.SIGKILL)
    for i in range(10):
        await writer.record(_call(i), _ok())
    await writer.close()
    assert await _count(store) == 10 and _segments(store) == []


async def test_memory_store_acknowledges_after_the_commit():
    s = await Store("sqlite:///:memory:").open()
    try:
        writer = UsageWriter(s)
        assert writer.ack == "commit" and writer.journal is None
        await writer.start()
        await writer.record(_call(), _ok())
        assert await _count(s) == 1
        await writer.close()
    finally:
        await s.close()


def test_ack_env_parsing():
    assert ack_from_env({}) == "journal"
    assert ack_from_env({"WATCHLLM_USAGE_ACK": "Commit"}) == "commit"
    with pytest.raises(ValueError):
        ack_from_env({"WATCHLLM_USAGE_ACK": "later"})


async def test_a_batch_bigger_than_one_statement_commits_every_row_once(store):
    from gateway.store.usage import ROWS_PER_STATEMENT
    from gateway.usage import usage_row

    rows = [usage_row(_call(i), _ok()) for i in range(3 * ROWS_PER_STATEMENT + 5)]
    await store.usage.insert_many(rows)
    await store.usage.insert_many(rows[:40])  # replayed rows: ignored, not duplicated
    assert await _count(store) == len(rows)


async def test_a_running_writer_adopts_the_segment_of_a_sibling_that_died(store, monkeypatch):
    monkeypatch.setattr(usage_mod, "ADOPT_INTERVAL_S", 0.02)
    writer = UsageWriter(store)
    await writer.start()
    from gateway.usage import usage_row

    sibling = UsageJournal(journal_dir(store.path))  # another worker of the same server
    sibling.open()
    rows = [usage_row(_call(100 + i), _ok()) for i in range(4)]
    for row in rows:
        sibling.append(row)
    await asyncio.sleep(0.1)
    assert await _count(store) == 0  # alive: its segment is its own
    sibling.close(delete=False)  # it died
    for _ in range(100):
        if await _count(store) == 4:
            break
        await asyncio.sleep(0.02)
    assert {r[0] for r in await store.fetchall("SELECT id FROM usage")} == {row[0] for row in rows}
    await writer.record(_call(1), _ok())  # the writer's own segment was left alone
    assert await writer.flush(timeout=5) and await _count(store) == 5
    await writer.close()
    assert _segments(store) == []



async def test_a_segment_from_an_older_schema_replays_by_column_name(store):
    import orjson
    from gateway.store.usage import COLUMNS

    old_columns = ["created_at", "id", "project_id", "status", "cost_micros"]  # fewer, in another order
    directory = journal_dir(store.path)
    directory.mkdir()
    (directory / "seg-1-old.jsonl").write_bytes(
        orjson.dumps({"watchllm_usage_journal": 1, "columns": old_columns}) + b"\n"
        + orjson.dumps([1_800_000_000.0, "req_old", "proj_a", 200, 42]) + b"\n"
        + orjson.dumps(["too", "short"]) + b"\n")  # does not match its header: skipped
    writer = UsageWriter(store)
    await writer.start()
    row = dict(await store.fetchone("SELECT * FROM usage"))
    assert (row["id"], row["project_id"], row["status"], row["cost_micros"]) == ("req_old", "proj_a", 200, 42)
    assert row["created_at"] == 1_800_000_000.0 and row["model_served"] is None and len(row) >= len(COLUMNS)
    await writer.close()


async def test_a_segment_the_database_refuses_does_not_stop_the_start_and_is_kept(store):
    from gateway.usage import usage_row

    dead = UsageJournal(journal_dir(store.path))
    dead.open()
    dead.append(usage_row(_call(1), _ok()))
    dead.close(delete=False)
    real = store.usage.insert_many

    async def refusing(rows):
        raise RuntimeError("database is locked")

    store.usage.insert_many = refusing
    writer = UsageWriter(store)
    await writer.start()  # serves anyway
    assert writer.replayed == 0 and len(_segments(store)) == 2  # the dead one kept, and the writer's own
    store.usage.insert_many = real
    assert await replay_journal(store, journal_dir(store.path)) == 1  # a later pass commits it
    await writer.close()
    assert await _count(store) == 1 and _segments(store) == []


def test_committer_env_parsing():
    from gateway.usage_committer import committer_mode_from_env, interval_from_env
    assert committer_mode_from_env({}) == "process"
    assert committer_mode_from_env({"WATCHLLM_USAGE_COMMITTER": "Inline"}) == "inline"
    with pytest.raises(ValueError):
        committer_mode_from_env({"WATCHLLM_USAGE_COMMITTER": "thread"})
    assert interval_from_env({}) == 0.02
    assert interval_from_env({"WATCHLLM_USAGE_COMMIT_INTERVAL_MS": "250"}) == 0.25
    for bad in ("soon", "0", "20000"):
        with pytest.raises(ValueError):
            interval_from_env({"WATCHLLM_USAGE_COMMIT_INTERVAL_MS": bad})


async def test_the_committer_runs_at_a_lower_priority_and_commits_without_being_asked(store, monkeypatch):
    monkeypatch.setenv("WATCHLLM_STORE_THREAD_NICE", "7")
    writer = UsageWriter(store)
    await writer.start()
    pid = writer._committer.pid
    await writer.record(_call(1), _ok())
    for _ in range(200):  # no read asks for it: the committer's own interval brings the row in
        if await store.fetchone("SELECT 1 FROM usage") is not None:
            break
        await asyncio.sleep(0.01)
    assert await _count(store) == 1
    assert os.getpriority(os.PRIO_PROCESS, pid) == os.getpriority(os.PRIO_PROCESS, 0) + 7
    await writer.close()


async def test_an_idle_committer_backs_off_and_comes_back_to_its_interval_when_rows_come(store):
    """Idle, the committer wakes at most 4 times a second (not 50: ~2% of a core per worker at rest);
    once rows come it commits every interval again, and a flush is answered at once."""
    import socket
    import threading
    import orjson
    from gateway.usage import usage_row
    from gateway.usage_committer import IDLE_MAX_S, _Loop

    ours, theirs = socket.socketpair()
    journal = UsageJournal(journal_dir(store.path))
    journal.open()
    index, _ = journal.position
    ours.sendall(orjson.dumps({"op": "segment", "index": index, "path": str(journal.path), "start": 0}) + b"\n")
    made: list[_Loop] = []

    def run() -> None:  # the loop's SQLite connection belongs to the thread that runs it
        made.append(_Loop(theirs, store.path, interval_s=0.02, busy_timeout_ms=5000))
        made[0].run()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    while not made:
        await asyncio.sleep(0.001)
    loop = made[0]
    try:
        await asyncio.sleep(1.5)
        idle_passes = loop.passes
        assert 3 <= idle_passes <= 14, idle_passes  # 75 at a fixed 20 ms
        journal.append(usage_row(_call(1), _ok()))
        deadline = time.monotonic() + IDLE_MAX_S + 2
        while await _count(store) == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert await _count(store) == 1  # within one idle pause, unasked
        before = loop.passes
        for i in range(2, 12):  # rows keep coming: a pass every interval
            journal.append(usage_row(_call(i), _ok()))
            await asyncio.sleep(0.03)
        assert loop.passes - before >= 5  # the 250 ms idle pause would give 1 or 2 in these 0.3 s
        deadline = time.monotonic() + 2  # the last row may wait one pause (20-40 ms)
        while await _count(store) < 11 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert await _count(store) == 11
        await asyncio.sleep(1.0)  # idle again
        ours.setblocking(False)
        try:
            while ours.recv(65536):
                pass
        except BlockingIOError:
            pass
        ours.setblocking(True)
        journal.append(usage_row(_call(99), _ok()))
        asked = time.monotonic()
        ours.sendall(b'{"op": "flush"}\n')
        ours.settimeout(5)
        reply = orjson.loads(ours.recv(65536).split(b"\n")[0])
        assert reply["rows"] == 1 and time.monotonic() - asked < IDLE_MAX_S  # not after the idle pause
    finally:
        ours.sendall(orjson.dumps({"op": "close", "end": journal.position[1]}) + b"\n")
        t.join(10)
        journal.close(delete=True)
        ours.close()
        theirs.close()
    assert not t.is_alive() and await _count(store) == 12


async def test_the_committer_works_when_the_gateway_holds_over_1024_descriptors(store):
    """The committer's socket keeps the gateway's fd number; a busy gateway (1,000+ connections) hands it
    one above 1024, where select() raises (the committer crashed at start, restarted, crashed: rows never
    committed)."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"the hard limit on descriptors is {hard}")
    want = max(soft, 2048) if hard == resource.RLIM_INFINITY else min(max(soft, 2048), hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    held = []
    try:
        while len(held) < 1100:
            held.append(os.open(os.devnull, os.O_RDONLY))
        writer = UsageWriter(store)
        await writer.start()
        assert writer._committer is not None
        await writer.record(_call(1), _ok())
        assert await writer.flush(timeout=10)
        assert await _count(store) == 1 and writer._committer.restarts == 0
        await writer.close()
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_rotation_swaps_in_a_segment_made_ahead_and_releases_the_old_one_later(tmp_path):
    import threading
    from gateway.usage import usage_row
    journal = UsageJournal(tmp_path / "j", segment_bytes=4096)
    journal.open()
    first = journal.path
    row = usage_row(_call(1), _ok())
    written = 0
    while not journal.wants_spare():
        journal.append(row)
        written += 1
    assert not journal.wants_spare(), "asked once: a second caller must not make another"
    t = threading.Thread(target=journal.prepare)  # what the writer runs in its executor
    t.start()
    t.join()
    spare = journal._spare[1]
    assert spare.exists() and len(list((tmp_path / "j").glob("seg-*.jsonl"))) == 2
    while not journal.full():
        journal.append(row)
        written += 1
    used = journal.position[1]
    assert journal.rotate() == first and journal.path == spare
    assert first.stat().st_size > used, "not trimmed yet: the old segment is released off the event loop"
    journal.release_retired()
    assert first.stat().st_size == used and journal._retired == []
    assert len(_rows_in(first)) == written
    # an unused spare is deleted at close
    while not journal.wants_spare():
        journal.append(row)
    journal.prepare()
    extra = journal._spare[1]
    journal.close(delete=True)
    assert not extra.exists() and not spare.exists() and first.exists()

