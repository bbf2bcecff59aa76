"""The ``semantic_cache`` middleware: exact layer, then semantic layer, then store on success.

Per request (chat completions only):

1. skip entirely when the policy says so (no-cache headers, n > 1, high temperature,
   tool calls in flight) or the project turned the cache off;
2. **exact**: hash of the normalized request (exact.py) → a hit in microseconds;
3. **semantic**: embed the last user message off the event loop, search the FAISS
   index of the request's scope, and accept the best candidate above the threshold
   that passes every correctness guard (guards.py) including the earlier turns, and
   the edit verifier (verifier.py) when the two questions are a small edit of each other;
4. on a miss, call the next layer and, when the response completes successfully
   (every choice ``finish_reason == "stop"``), store it with the vector already
   computed in step 3. Partial streams, errors and tool-call answers are never stored.

A hit is replayed as SSE when the request streams (several chunks, finish_reason,
usage chunk) or as JSON, with a fresh ``id``/``created``; ``call.facts`` records the
hit kind, the tokens and the cost saved; the response costs 0.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import orjson

from gateway import Call, Endpoint, Handler, Outcome, Reply, Services, Usage
from gateway.chunks import completion_to_chunks, new_id

from .config import SemanticCacheConfig, project_settings
from .embedder import EmbeddingRunner, load_backend
from .entry import Entry, Replay, new_entry_id
from .exact import CacheRequest, build_request
from .guards import check, check_context, extract
from .index import CacheIndex
from .policy import skip_reason, threshold_override
from .store import CacheStore, MemoryStore
from .verifier import verify

__all__ = ["SemanticCache"]

log = logging.getLogger("watchllm.semantic_cache")

BACKEND_EXTRA = "semantic_cache.backend"  # Services.extras key: a preloaded embedding backend to share


@dataclass
class _Counters:
    exact: int = 0
    semantic: int = 0
    misses: int = 0
    skipped: int = 0
    stored: int = 0
    rejected_by: dict[str, int] = field(default_factory=dict)


class SemanticCache:
    Config = SemanticCacheConfig

    def __init__(self, config: SemanticCacheConfig, services: Services) -> None:
        self.config = config
        self.services = services
        self.index = CacheIndex(max_entries=config.max_entries, eviction_batch=config.eviction_batch)
        self.store: CacheStore = MemoryStore(self.index)
        self.runner: EmbeddingRunner | None = None
        self._counters: dict[str, _Counters] = {}
        self._default_settings = project_settings(config, None)  # most projects set nothing: merge once

    # lifecycle -------------------------------------------------------------------
    async def startup(self) -> None:
        cfg = self.config
        if cfg.semantic:
            backend = self.services.extras.get(BACKEND_EXTRA)
            if backend is None:
                # Importing torch and loading the model takes seconds: keep the loop free meanwhile.
                backend = await asyncio.get_running_loop().run_in_executor(None, load_backend, cfg.backend, cfg.onnx_path)
            else:  # shared by whoever preloaded it (tests, several plugin instances)
                import faiss

                faiss.omp_set_num_threads(1)
            self.runner = EmbeddingRunner(backend, batch_max=cfg.batch_max)
            self.index.dim = backend.dim
        url = self.services.config.state.url
        if cfg.store == "redis" or (cfg.store == "auto" and url.startswith(("redis://", "rediss://", "unix://"))):
            from .redis_store import RedisStore

            self.store = RedisStore(self.index, url, prefix=cfg.redis_prefix, max_connections=self.services.config.state.max_connections)
        await self.store.start()

    async def shutdown(self) -> None:
        await self.store.close()
        if self.runner is not None:
            self.runner.close()

    # admin -----------------------------------------------------------------------
    async def flush(self, project_id: str) -> int:
        """Drop every entry of one project (all replicas with Redis); returns how many were dropped."""
        return await self.store.flush(project_id)

    def stats(self, project_id: str) -> dict[str, Any]:
        c = self._counters.get(project_id) or _Counters()
        hits = c.exact + c.semantic
        looked = hits + c.misses
        return {
            "entries": self.index.size(project_id),
            "hits": {"exact": c.exact, "semantic": c.semantic},
            "misses": c.misses,
            "skipped": c.skipped,
            "stored": c.stored,
            "hit_rate": round(hits / looked, 4) if looked else 0.0,
            "rejected_by_guard": dict(c.rejected_by),
        }

    def _count(self, project: str) -> _Counters:
        c = self._counters.get(project)
        if c is None:
            c = self._counters[project] = _Counters()
        return c

    # the request path ------------------------------------------------------------
    async def __call__(self, call: Call, call_next: Handler) -> Reply:
        if call.endpoint != Endpoint.CHAT:
            return await call_next(call)
        raw = call.project.settings.get("semantic_cache") if call.project is not None else None
        settings = self._default_settings if raw is None else project_settings(self.config, raw)
        if not settings.enabled:
            return await call_next(call)
        project = call.project_id
        counters = self._count(project)
        if skip_reason(call.headers, call.body, self.config.max_temperature) is not None:
            counters.skipped += 1
            return await call_next(call)
        threshold = threshold_override(call.headers) or settings.threshold
        req = build_request(project, call.endpoint, call.body)
        if req is None:
            counters.skipped += 1
            return await call_next(call)

        entry = self.store.get_exact(project, req.exact_key)
        if entry is not None:
            counters.exact += 1
            return self._serve(call, entry, "exact", 1.0)

        vector = None
        if settings.semantic and req.semantic_ok and self.runner is not None:
            try:
                vector = await self.runner.embed(req.question)
            except Exception as exc:  # a broken model degrades to the exact cache, never to an error
                log.warning("semantic cache: embedding failed: %s: %s", type(exc).__name__, exc)
            if vector is not None:
                found = self._match(project, req, vector, threshold, counters)
                if found is not None:
                    counters.semantic += 1
                    return self._serve(call, found[1], "semantic", found[0])

        counters.misses += 1
        reply = await call_next(call)
        if reply.status >= 400 or reply.error is not None:
            return reply
        reply.collect()

        async def store(outcome: Outcome) -> None:
            await self._store(call, req, vector, outcome)

        reply.on_complete(store)
        return reply

    def _match(self, project: str, req: CacheRequest, vector: Any, threshold: float, counters: _Counters) -> tuple[float, Entry] | None:
        facts = None
        for score, entry in self.store.search(project, req.scope, vector, self.config.top_k):
            if score < threshold:
                break
            if not self.config.guards:
                return score, entry
            facts = facts or extract(req.question)
            failed = check(facts, entry.facts)
            if failed is None and not check_context(req.context, entry.context, self.config.context_min_ratio):
                failed = "context"
            if failed is None and self.config.verifier:
                edit = verify(entry.facts, facts)
                failed = f"verifier:{edit}" if edit else None
            if failed is None:
                return score, entry
            counters.rejected_by[failed] = counters.rejected_by.get(failed, 0) + 1
        return None

    async def _store(self, call: Call, req: CacheRequest, vector: Any, outcome: Outcome) -> None:
        body = outcome.body
        if not outcome.ok or not isinstance(body, dict):
            return
        choices = body.get("choices") or []
        if not choices or any(c.get("finish_reason") != "stop" or (c.get("message") or {}).get("tool_calls") for c in choices):
            return  # truncated, filtered or a tool call: not an answer to replay
        now = time.time()
        entry = Entry(
            id=new_entry_id(), project=call.project_id, scope=req.scope, exact_key=req.exact_key, question=req.question,
            context=req.context, response=body, model=call.facts.model_served or str(body.get("model") or call.model),
            created=now, expires=now + self.config.ttl_seconds, vector=vector,
        )
        await self.store.put(entry)
        self._count(call.project_id).stored += 1

    def _serve(self, call: Call, entry: Entry, kind: str, score: float) -> Reply:
        pricing = self.services.pricing
        served = entry.served
        if served is None or served.pricing is not pricing:
            usage = Usage.from_openai(entry.response.get("usage"))
            served = entry.served = Replay(pricing, orjson.dumps(entry.response), usage, usage.total_tokens if usage else 0,
                                           pricing.cost_micros(entry.model, usage))
        body = orjson.loads(served.body)  # a fresh copy: layers above may edit the reply
        body["id"], body["created"] = new_id(), int(time.time())
        saved = served.tokens_saved
        call.facts.cached = kind
        call.facts.provider = "cache"
        call.facts.model_served = entry.model
        call.facts.tokens_saved = saved
        call.facts.cost_saved_micros = served.cost_saved_micros
        call.reply_headers["x-watchllm-cached"] = "true"
        call.reply_headers["x-watchllm-tokens-saved"] = str(saved)
        call.reply_headers["x-watchllm-cache-kind"] = kind
        call.reply_headers["x-watchllm-cache-similarity"] = f"{score:.4f}"
        if call.stream:
            chunks = completion_to_chunks(body, pieces=self.config.replay_pieces, include_usage=True, fresh_id=False)
            return Reply.stream(_replay(chunks))
        return Reply.json(body)


async def _replay(chunks: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    for chunk in chunks:
        yield chunk
