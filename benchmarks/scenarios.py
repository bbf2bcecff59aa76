"""Benchmark scenarios: what each one measures and how long, which ones a run selects, and the request bodies they send."""
from __future__ import annotations

from dataclasses import dataclass, field

from .loadgen import BodySource, chat_body


@dataclass
class Durations:
    closed: float
    open: float
    stream: float
    warmup: float
    concurrency: int = 64
    stream_rate: float = 100.0
    chunk_delay_ms: float = 2.0
    chunks: int = 8
    interleave_rounds: int = 8          # bracketed scenarios: alternate short runs with the pass-through
    interleave_s: float = 2.0
    latency_rounds: int = 8             # scenarios with latency_rounds: open loop alternating with direct
    latency_s: float = 3.0

    @classmethod
    def quick(cls) -> "Durations":
        return cls(closed=3, open=3, stream=2, warmup=0.5, interleave_rounds=3, interleave_s=1.5, latency_rounds=3, latency_s=2.0)

    @classmethod
    def full(cls) -> "Durations":
        # Open loops run 30 s: a p99 over 10 s is the ~270th-worst of 27k requests at 2,700/s, so one
        # 60-100 ms stall of the shared machine (it delays 300-500 requests at half load) decides it alone;
        # over 30 s one such stall stays below the 1% (seen on 2026-12-06: 10 s runs of the same gateway at
        # added p99 2.2-2.8 ms except one at 13.8 ms, max 98 ms, and the pass-through with a 58 ms stall).
        return cls(closed=10, open=30, stream=6, warmup=2)


@dataclass
class Scenario:
    name: str
    group: str
    description: str
    target: str = "gateway"             # direct | passthrough | passthrough_lean | gateway
    pipeline: str | None = None         # a name in configs/pipelines.yaml (or a minus-variant, see below)
    closed: bool = True
    open: bool = True
    stream: bool = False
    body: str = "fixed"                 # fixed | unique (defeats exact caches) | paraphrase (semantic hits)
    state: str = "memory"               # memory | redis
    store: str = "file"                 # file | memory (sqlite:///:memory:)
    workers: int = 1
    pinned: bool = True
    bracket: bool = False               # measure the pass-through right before and after (noise control)
    latency_rounds: bool = False        # also open loops alternating with direct, added latency per round (noise control)
    quick: bool = True                  # part of --quick
    drop: str | None = None             # "full minus X": the middleware left out
    prime: bool = False                 # send the cacheable body once before measuring
    env: dict[str, str] = field(default_factory=dict)  # extra environment for the gateway process
    concurrency: int | None = None      # closed-loop connections, if not Durations.concurrency


def scenarios() -> list[Scenario]:
    out = [
        Scenario("direct", "core", "load generator → mock upstream (no proxy)", target="direct", stream=True),
        Scenario("passthrough", "core", "bare aiohttp pass-through proxy (the ceiling)", target="passthrough", stream=True),
        Scenario("passthrough_lean", "core", "lean pass-through: llhttp server + the gateway's h1 client (a second reference)",
                 target="passthrough_lean", open=False),
        Scenario("router", "core", "gateway, pipeline [router]", pipeline="router", stream=True, body="unique"),
        Scenario("full_miss", "core", "full chain, cache miss: metrics, auth, ratelimit, budget, dlp, router",
                 pipeline="full", stream=True, body="unique", bracket=True, latency_rounds=True),
        Scenario("full_miss_commit", "core", "full chain, usage acknowledged after its SQLite commit (WATCHLLM_USAGE_ACK=commit)",
                 pipeline="full", body="unique", env={"WATCHLLM_USAGE_ACK": "commit"}, quick=False),
        Scenario("router_memstore", "core", "gateway [router], store sqlite :memory: (usage rows not on disk)",
                 pipeline="router", body="unique", store="memory", quick=False),
        Scenario("exact_hit", "cache", "exact cache hit: [semantic_cache(exact), router], same prompt",
                 pipeline="exact_cache", prime=True, bracket=True),
        Scenario("full_exact_hit", "cache", "full chain + exact cache hit", pipeline="full_exact_cache", prime=True, open=False),
        Scenario("semantic_hit", "cache", "semantic cache hit: paraphrased prompt, embedding + vector search",
                 pipeline="semantic_cache", body="paraphrase", prime=True),
        Scenario("redis_state", "state", "full chain, counters on redis-server (state.url redis://)",
                 pipeline="full", body="unique", state="redis"),
        # Unpinned: the kernel places the workers on both cores (the load generator and the mock stay on core 0).
        # 256 connections keep both workers busy (at 64, 2 workers over 1: 1.05x; at 256: 1.19x, 2026-12-06).
        Scenario("workers_1", "scale", "full chain, 1 worker, unpinned, 256 connections",
                 pipeline="full", body="unique", pinned=False, open=False, concurrency=256),
        Scenario("workers_2", "scale", "full chain, 2 workers (SO_REUSEPORT), unpinned, 256 connections",
                 pipeline="full", body="unique", pinned=False, open=False, workers=2, concurrency=256),
    ]
    out.append(Scenario("full_ref", "middleware", "full chain again, measured like the rows below (their reference)",
                        pipeline="full", body="unique", open=False))
    for mw in ("metrics", "auth", "ratelimit", "budget", "dlp"):
        out.append(Scenario(f"full_minus_{mw}", "middleware", f"full chain without {mw} (its share = full − this)",
                            pipeline="full", drop=mw, body="unique", open=False))
    out.append(Scenario("full_plus_request_log", "middleware", "full chain with the per-request JSON log line (LOG_LEVEL=INFO, "
                        "the gateway's default; its share = this − full)", pipeline="full", body="unique", open=False,
                        env={"LOG_LEVEL": "INFO"}))
    return out


def select(all_sc: list[Scenario], names: list[str] | None, quick: bool) -> list[Scenario]:
    if names:
        wanted = set(names)
        chosen = [s for s in all_sc if s.name in wanted or s.group in wanted]
        # the references every ratio needs
        ref = {"direct", "passthrough", "full_miss"}
        return [s for s in all_sc if s in chosen or s.name in ref]
    return [s for s in all_sc if s.quick or not quick]


# ------------------------------------------------------------------------------------------ bodies

def body_for(kind: str, *, stream: bool = False) -> BodySource:
    if kind == "unique":
        return BodySource(chat_body(stream=stream, prompt="Request {n}: summarise the benefits of connection pooling in two sentences."))
    if kind == "paraphrase":
        # Differs per request (exact cache misses) but means the same (semantic cache hits).
        return BodySource(chat_body(stream=stream, prompt="Please summarise the benefits of connection pooling in two sentences, {n}."),
                          words=True)
    return BodySource(chat_body(stream=stream))


PRIME_BODY = {
    "fixed": chat_body(),
    "paraphrase": chat_body(prompt="Please summarise the benefits of connection pooling in two sentences."),
}
