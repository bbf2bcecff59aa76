"""UsageWriter: group commit, durability before return, idempotence, flush on close, retention."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from gateway.call import ApiKeyInfo, Project, Usage
from gateway.errors import GatewayError
from gateway.reply import Outcome
from gateway.store import Store
from gateway.testing import make_call
from gateway.usage import UsageWriter, retention_from_env


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


async def test_concurrent_records_share_commits_and_are_durable_on_return(store):
    writer = UsageWriter(store)
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


async def test_same_request_id_twice_is_one_row(store):
    writer = UsageWriter(store)
    await writer.start()
    c = _call()
    await writer.record(c, _ok(cost=1))
    await writer.record(c, _ok(cost=2))
    assert await _count(store) == 1
    assert (await store.fetchone("SELECT cost_micros FROM usage"))[0] == 1
    await writer.close()


async def test_close_commits_everything_still_queued(store):
    writer = UsageWriter(store)
    await writer.start()
    tasks = [asyncio.ensure_future(writer.record(_call(i), _ok())) for i in range(300)]
    await asyncio.sleep(0)  # queued, not yet committed
    await writer.close()
    await asyncio.gather(*tasks)
    assert await _count(store) == 300
    # a record after close is written directly, not lost
    await writer.record(_call(999), _ok())
    assert await _count(store) == 301


async def test_error_outcome_records_code_and_dlp_counts(store):
    writer = UsageWriter(store)
    await writer.start()
    c = _call()
    c.facts.dlp_findings = {"email": 2}
    await writer.record(c, Outcome(status=429, ended="error", error=GatewayError("rate_limit_exceeded", "slow down")))
    row = dict(await store.fetchone("SELECT * FROM usage"))
    assert row["status"] == 429 and row["error_code"] == "rate_limit_exceeded" and row["dlp_findings"] == '{"email":2}'
    await writer.close()


async def test_failed_commit_is_retried_then_reported_to_the_waiter(store):
    writer = UsageWriter(store, retry_delays=(0.001, 0.001))
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
    assert await writer.purge_once() == 1
    assert [r[0] for r in await store.fetchall("SELECT id FROM usage")] == [new.id]
    await writer.close()


def test_retention_env_parsing():
    assert retention_from_env({}) == (None, 3600.0)
    assert retention_from_env({"WATCHLLM_USAGE_RETENTION_DAYS": "30"}) == (30 * 86400, 3600.0)
    assert retention_from_env({"WATCHLLM_USAGE_RETENTION_DAYS": "0", "WATCHLLM_USAGE_PURGE_INTERVAL_S": "60"}) == (None, 60.0)
    with pytest.raises(ValueError):
        retention_from_env({"WATCHLLM_USAGE_RETENTION_DAYS": "thirty"})
