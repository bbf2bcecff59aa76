"""Replicas share the cache through a real Redis: inserts, flushes and start-up loading."""
from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time

import pytest

from gateway import Project
from gateway.testing import ScriptedNext, drive, make_call, make_services
from plugins.middleware.semantic_cache import SemanticCache, SemanticCacheConfig
from plugins.middleware.semantic_cache.middleware import BACKEND_EXTRA

pytestmark = pytest.mark.redis


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_url():
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server binary not installed")
    port = _free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.02)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(5)


async def replica(url: str, **kw) -> SemanticCache:
    services = make_services({"state": {"url": url}, "providers": {"mock": {"type": "mock"}}, "models": {"mock": {"targets": ["mock/mock-1"]}}},
                             extras=kw.pop("extras", {}))
    mw = SemanticCache(SemanticCacheConfig(**{"semantic": False, **kw}), services)
    await mw.startup()
    return mw


def req(text: str, project: str = "p1"):
    return make_call({"model": "mock", "messages": [{"role": "user", "content": text}]}, project=Project(id=project))


async def ask(mw, call, nxt):
    return await drive(await mw(call, nxt), call)


async def eventually(pred, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        await asyncio.sleep(0.02)
    return pred()


async def test_an_answer_stored_by_one_replica_is_served_by_another(redis_url):
    a, b = await replica(redis_url), await replica(redis_url)
    try:
        nxt = ScriptedNext(text="from replica a")
        await ask(a, req("What is DNS?"), nxt)
        assert await eventually(lambda: b.stats("p1")["entries"] == 1)
        call = req("What is DNS?")
        out = await ask(b, call, nxt)
        assert len(nxt.calls) == 1 and out.text == "from replica a" and call.facts.cached == "exact"
    finally:
        await a.shutdown()
        await b.shutdown()


async def test_a_fresh_replica_loads_existing_entries_at_start_up(redis_url):
    a = await replica(redis_url)
    nxt = ScriptedNext(text="stored before c started")
    for i in range(3):
        await ask(a, req(f"question {i}"), nxt)
    c = await replica(redis_url)
    try:
        assert c.stats("p1")["entries"] == 3  # no waiting: loaded in startup()
        out = await ask(c, req("question 2"), nxt)
        assert len(nxt.calls) == 3 and out.text == "stored before c started"
    finally:
        await a.shutdown()
        await c.shutdown()


async def test_flush_on_one_replica_empties_the_project_everywhere(redis_url):
    a, b = await replica(redis_url), await replica(redis_url)
    try:
        nxt = ScriptedNext(text="x")
        await ask(a, req("What is DNS?", "p1"), nxt)
        await ask(a, req("What is DNS?", "p2"), nxt)
        assert await eventually(lambda: b.stats("p1")["entries"] == 1 and b.stats("p2")["entries"] == 1)
        assert await a.flush("p1") == 1
        assert await eventually(lambda: b.stats("p1")["entries"] == 0)
        assert b.stats("p2")["entries"] == 1
        fresh = await replica(redis_url)
        assert fresh.stats("p1")["entries"] == 0 and fresh.stats("p2")["entries"] == 1
        await fresh.shutdown()
    finally:
        await a.shutdown()
        await b.shutdown()


async def test_the_project_bound_holds_in_redis(redis_url):
    a = await replica(redis_url, max_entries=5)
    try:
        nxt = ScriptedNext(text="x")
        for i in range(12):
            await ask(a, req(f"q{i}"), nxt)
        zsize = await a.store.redis.zcard("watchllm:cache:p:p1")
        assert zsize <= 5 and a.stats("p1")["entries"] <= 5
        fresh = await replica(redis_url, max_entries=5)
        assert fresh.stats("p1")["entries"] <= 5
        await fresh.shutdown()
    finally:
        await a.shutdown()


@pytest.mark.semantic
async def test_a_paraphrase_hits_on_a_replica_that_never_saw_the_question(redis_url):
    pytest.importorskip("sentence_transformers")
    from plugins.middleware.semantic_cache.embedder import load_backend

    backend = load_backend("sentence_transformers")
    a = await replica(redis_url, semantic=True, extras={BACKEND_EXTRA: backend})
    b = await replica(redis_url, semantic=True, extras={BACKEND_EXTRA: backend})
    try:
        nxt = ScriptedNext(text="Use the reset link.")
        await ask(a, req("How do I reset my password?"), nxt)
        assert await eventually(lambda: b.stats("p1")["entries"] == 1)
        call = req("How can I reset my password?")
        await ask(b, call, nxt)
        assert call.facts.cached == "semantic" and len(nxt.calls) == 1
    finally:
        await a.shutdown()
        await b.shutdown()
