"""Semantic cache speed on this machine: exact and semantic hits, lookup p50/p99, loop lag under misses.

    python -m benchmarks.bench_semantic_cache [--entries 10000] [--backend sentence_transformers|onnx]

Everything runs in one process with the real model and FAISS (1 thread each), the
middleware driven as the server drives it (gateway.testing.drive), no HTTP.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway import Project  # noqa: E402
from gateway.testing import ScriptedNext, drive, make_call, make_services  # noqa: E402
from plugins.middleware.semantic_cache import SemanticCache, SemanticCacheConfig  # noqa: E402
from plugins.middleware.semantic_cache.embedder import load_backend  # noqa: E402
from plugins.middleware.semantic_cache.entry import Entry  # noqa: E402
from plugins.middleware.semantic_cache.exact import build_request  # noqa: E402
from plugins.middleware.semantic_cache.middleware import BACKEND_EXTRA  # noqa: E402


def pcts(xs: list[float]) -> str:
    xs = sorted(xs)
    return f"p50 {1000 * xs[len(xs) // 2]:.3f} ms, p99 {1000 * xs[max(0, int(len(xs) * 0.99) - 1)]:.3f} ms"


def req(text: str, **kw):
    return make_call({"model": "mock", "messages": [{"role": "user", "content": text}], **kw}, project=Project(id="bench"))


async def run(entries: int, backend_kind: str) -> list[str]:
    lines = []
    t0 = time.perf_counter()
    backend = load_backend(backend_kind)
    lines.append(f"- backend `{backend_kind}` loaded in {time.perf_counter() - t0:.1f} s")
    mw = SemanticCache(SemanticCacheConfig(max_entries=entries + 100), make_services(extras={BACKEND_EXTRA: backend}))
    await mw.startup()
    nxt = ScriptedNext(text="cached answer")
    await drive(await mw(req("How do I reset my password?"), nxt), req("How do I reset my password?"))
    # fill the same scope with synthetic entries so the search runs over `entries` vectors
    scope = build_request("bench", "chat.completions", {"model": "mock", "messages": [{"role": "user", "content": "x"}]}).scope
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((entries, 384)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    now = time.time()
    for i in range(entries):
        mw.index.add(Entry(id=10_000_000 + i, project="bench", scope=scope, exact_key=f"k{i}", question=f"synthetic {i}", context=(),
                           response={}, model="m", created=now, expires=now + 3600, vector=vecs[i]), now)
    lines.append(f"- scope holds {mw.index.size('bench')} entries (IndexIDMap2(IndexFlatIP), 1 OpenMP thread)")

    # exact hits
    n, lat = 5000, []
    t0 = time.perf_counter()
    for _ in range(n):
        s = time.perf_counter()
        await mw(req("How do I reset my password?"), nxt)
        lat.append(time.perf_counter() - s)
    total = time.perf_counter() - t0
    lines.append(f"- exact hit (middleware, to the Reply): {pcts(lat)}; {n / total:,.0f} hits/s on one core")

    # semantic hits: embedding + search + guards
    lat = []
    for i in range(60):
        s = time.perf_counter()
        call = req("How can I reset my password?" + " " * (i % 3))
        r = await mw(call, nxt)
        lat.append(time.perf_counter() - s)
        assert call.facts.cached == "semantic", call.facts
        del r
    lines.append(f"- semantic hit (embed + search + guards + verifier): {pcts(lat)}")
    q = await mw.runner.embed("How can I reset my password?")
    search = []
    for _ in range(200):
        s = time.perf_counter()
        mw.store.search("bench", scope, q, 4)
        search.append(time.perf_counter() - s)
    lines.append(f"- of which FAISS search at {entries} entries: {pcts(search)}")
    emb = []
    for i in range(60):
        s = time.perf_counter()
        await mw.runner.embed(f"How can I reset my password, attempt {i}?")
        emb.append(time.perf_counter() - s)
    lines.append(f"- of which one embedding (single text, worker thread): {pcts(emb)}")
    # the guards and the edit verifier on one candidate (what a lookup pays per candidate above the threshold)
    from plugins.middleware.semantic_cache.guards import check, extract
    from plugins.middleware.semantic_cache.verifier import verify

    stored = extract("How do I reset my password?")
    guards, verifier = [], []
    for i in range(2000):
        asked = extract("How can I reset my password?" + " " * (i % 3))
        s = time.perf_counter()
        check(asked, stored)
        guards.append(time.perf_counter() - s)
        s = time.perf_counter()
        verify(stored, asked)
        verifier.append(time.perf_counter() - s)
    lines.append(f"- of which the guards, per candidate: {pcts(guards)}; the edit verifier, per candidate: {pcts(verifier)}")

    # loop lag during a burst of misses
    lags: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            s = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append(time.perf_counter() - s - 0.001)

    tick = asyncio.ensure_future(ticker())
    await asyncio.sleep(0.05)
    batches0, texts0 = mw.runner.batches, mw.runner.texts
    s = time.perf_counter()

    async def miss(i: int) -> None:
        await drive(await mw(req(f"Tell me fact number {i} about the history of the printing press"), nxt))

    await asyncio.gather(*(miss(i) for i in range(64)))
    burst = time.perf_counter() - s
    stop.set()
    await tick
    lines.append(f"- burst of 64 concurrent misses: {burst * 1000:.0f} ms, {mw.runner.batches - batches0} batches for "
                 f"{mw.runner.texts - texts0} texts; event-loop lag {pcts(lags)}, max {1000 * max(lags):.1f} ms")
    await mw.shutdown()
    return lines


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=10000)
    ap.add_argument("--backend", default="sentence_transformers")
    args = ap.parse_args()
    lines = asyncio.run(run(args.entries, args.backend))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
