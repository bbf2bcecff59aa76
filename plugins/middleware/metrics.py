"""``metrics``: Prometheus counters and histograms for every request, served at ``GET /metrics``.

Put it first in the pipeline so it sees every reply, short-circuits (401, 429, 402,
cache hits) included. It records in the reply's completion hook, once per request,
when the outcome (status, tokens, cost, TTFT) is known, and never touches the stream.

Label cardinality is bounded by construction: ``model`` is a configured alias or
``other`` (a client can send any model name), ``provider`` a configured provider or
``none``, ``status`` an HTTP code, ``code`` an error code from ``gateway.errors``,
``cache`` one of ``none|exact|semantic``. The ``project`` label is opt-in
(``project_labels: true``) and capped (``max_projects``, then ``_other``); when off it
is the empty string, which PromQL treats as absent. No request ids, no keys.

Each app gets its own ``CollectorRegistry`` (several apps in one test process do not
collide). With ``PROMETHEUS_MULTIPROC_DIR`` set (several worker processes),
``/metrics`` aggregates every worker's files through ``MultiProcessCollector``.
"""
from __future__ import annotations

import os
import time
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gateway import Call, Handler, Reply, Services
from gateway.errors import ERROR_CODES
from gateway.reply import Outcome

__all__ = ["Metrics", "MetricsConfig", "LATENCY_BUCKETS"]

# LLM calls span 5 ms (a cache hit) to minutes (a long reasoning stream).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120)
FLUSH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000)
REJECTION_CODES = frozenset({"rate_limit_exceeded", "budget_exceeded", "quota_exceeded"})
CIRCUIT_STATES = {"closed": 0, "half_open": 1, "open": 2}
MAX_DETECTORS = 64


@dataclass(frozen=True, kw_only=True)
class MetricsConfig:
    project_labels: bool = field(default=False, metadata={"help": "label request/token/cost series with the project id (opt-in)"})
    max_projects: int = field(default=100, metadata={"help": "distinct project label values before `_other`"})


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir") or None


class Metrics:
    Config = MetricsConfig

    def __init__(self, config: MetricsConfig | None, services: Services) -> None:
        self.cfg = config or MetricsConfig()
        self.services = services
        self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess = multiprocess_dir() is not None
        self._models = frozenset(services.config.models)
        self._providers = frozenset(services.config.providers)
        self._projects: set[str] = set()
        self._detectors: set[str] = set()
        self._children: dict[tuple[Any, ...], Any] = {}
        self._kids: dict[tuple[Any, ...], _Kids] = {}
        # Per-request updates are summed in plain dicts and handed to prometheus_client whenever the
        # registry is read (a scrape, a test): its lock per update and its Python bucket loop were
        # ~12 µs per request. Registered first, so every read sees every update. With several worker
        # processes the others read this one's files, so updates go straight through there.
        self._defer = not self.multiprocess
        self._incs: dict[Any, float] = {}       # counter or gauge child -> amount not applied yet
        self._obs: dict[Any, list[float]] = {}  # histogram child -> [count per bucket..., sum]
        self.registry.register(_FlushOnCollect(self.flush_pending))
        r = self.registry
        self.requests = Counter("watchllm_requests", "Requests by project, model alias, provider, HTTP status and cache result",
                                ["project", "model", "provider", "status", "cache"], registry=r)
        self.latency = Histogram("watchllm_request_duration_seconds", "Time from request parsed to response complete",
                                 ["model", "provider"], buckets=LATENCY_BUCKETS, registry=r)
        self.upstream = Histogram("watchllm_upstream_duration_seconds", "Time the upstream took to answer (headers, for streams)",
                                  ["provider", "model"], buckets=LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("watchllm_time_to_first_token_seconds", "Time to the first streamed chunk sent to the client",
                              ["provider", "model"], buckets=TTFT_BUCKETS, registry=r)
        self.tokens = Counter("watchllm_tokens", "Tokens by direction (prompt, completion)", ["project", "model", "direction"], registry=r)
        self.cost = Counter("watchllm_cost_usd", "Upstream cost in USD (cache hits cost 0)", ["project", "model"], registry=r)
        self.cache_hits = Counter("watchllm_cache_hits", "Requests answered from the cache, by kind", ["kind"], registry=r)
        self.tokens_saved = Counter("watchllm_cache_tokens_saved", "Tokens not sent upstream thanks to the cache", ["kind"], registry=r)
        self.cost_saved = Counter("watchllm_cache_cost_saved_usd", "USD not spent upstream thanks to the cache", ["kind"], registry=r)
        self.errors = Counter("watchllm_errors", "Error replies by stable error code", ["code"], registry=r)
        self.rejections = Counter("watchllm_rejections", "Requests refused by a rate limit (429) or a budget/quota (402)",
                                  ["code"], registry=r)
        self.dlp = Counter("watchllm_dlp_findings", "DLP findings by detector and action", ["detector", "action"], registry=r)
        self.attempts = Counter("watchllm_upstream_attempts", "Upstream attempts (retries and fallbacks included)", ["provider"], registry=r)
        gauge = {"multiprocess_mode": "livesum"}
        self.in_flight = Gauge("watchllm_requests_in_flight", "Requests inside the pipeline or still streaming", registry=r, **gauge)
        self.usage_queue = Gauge("watchllm_usage_queue_depth", "Usage rows waiting for their group commit", registry=r, **gauge)
        self.usage_flush = Histogram("watchllm_usage_flush_seconds", "Duration of one usage group commit", buckets=FLUSH_BUCKETS, registry=r)
        self.usage_batch = Histogram("watchllm_usage_batch_rows", "Rows per usage group commit", buckets=BATCH_BUCKETS, registry=r)
        self.usage_wait = Histogram("watchllm_usage_commit_wait_seconds", "Time a request waited for its usage row to be durable (journal write, or the commit with WATCHLLM_USAGE_ACK=commit)",
                                    buckets=FLUSH_BUCKETS, registry=r)
        self.circuit = Gauge("watchllm_provider_circuit_state", "Circuit breaker per target: 0 closed, 1 half-open, 2 open",
                             ["target"], registry=r, multiprocess_mode="max")
        self.provider_up = Gauge("watchllm_provider_up", "1 when the provider is configured and its circuit is not open",
                                 ["provider"], registry=r, multiprocess_mode="min")
        for name in self._providers:
            self.provider_up.labels(name).set(1)
        if self._defer:  # (never probe in multiprocess mode: the probe series would stay in the shared files)
            probe = self.latency.labels("_probe", "_probe")
            if not all(hasattr(probe, a) for a in ("_upper_bounds", "_buckets", "_sum")):
                self._defer = False  # a prometheus_client without these internals: observe() directly
            self.latency.remove("_probe", "_probe")
        services.metrics = self
        services.extras["metrics"] = self

    # lifecycle ---------------------------------------------------------------------
    async def startup(self) -> None:
        writer = self.services.usage
        if writer is not None:
            writer.listeners.append(self._on_flush)
            writer.waiters.append(self._observe_wait)

    async def shutdown(self) -> None:
        writer = self.services.usage
        if writer is not None:
            if self._on_flush in writer.listeners:
                writer.listeners.remove(self._on_flush)
            if self._observe_wait in writer.waiters:
                writer.waiters.remove(self._observe_wait)
        if self.multiprocess:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())

    def _on_flush(self, rows: int, seconds: float, depth: int) -> None:
        self._observe(self.usage_flush, seconds)
        self._observe(self.usage_batch, rows)
        self.usage_queue.set(depth)

    def _observe_wait(self, seconds: float) -> None:
        self._observe(self.usage_wait, seconds)

    # deferred updates ------------------------------------------------------------------
    def _inc(self, child: Any, amount: float = 1.0) -> None:
        if self._defer:
            self._incs[child] = self._incs.get(child, 0.0) + amount
        else:
            child.inc(amount)

    def _observe(self, child: Any, value: float) -> None:
        if not self._defer:
            child.observe(value)
            return
        slot = self._obs.get(child)
        if slot is None:
            slot = self._obs[child] = [0.0] * (len(child._upper_bounds) + 1)
        slot[bisect_left(child._upper_bounds, value)] += 1  # the first bucket with value <= bound, as observe()
        slot[-1] += value

    def flush_pending(self) -> None:
        """Apply the summed updates to the Prometheus metrics (called on every registry read)."""
        incs, self._incs = self._incs, {}
        for child, amount in incs.items():
            child.inc(amount)
        obs, self._obs = self._obs, {}
        for child, slot in obs.items():
            for i, n in enumerate(slot[:-1]):
                if n:
                    child._buckets[i].inc(n)
            child._sum.inc(slot[-1])

    # the middleware --------------------------------------------------------------------
    async def __call__(self, call: Call, call_next: Handler) -> Reply:
        self._inc(self.in_flight, 1)
        try:
            reply = await call_next(call)
        except BaseException:
            self._inc(self.in_flight, -1)
            self._count(call, Outcome(status=500, ended="error"), code="internal_error")
            raise

        async def done(outcome: Outcome) -> None:
            self._inc(self.in_flight, -1)
            self._count(call, outcome)

        reply.on_complete(done)
        return reply

    def _count(self, call: Call, outcome: Outcome, code: str | None = None) -> None:
        f = call.facts
        alias = call.model
        model = alias if alias in self._models else "other"
        provider = f.provider if f.provider in self._providers else "none"
        cache = f.cached or "none"
        project = self._project(call.project_id)
        status = outcome.status
        kids = self._kids.get((project, model, provider, status, cache))
        if kids is None:
            kids = self._kids_for(project, model, provider, status, cache)
        self._inc(kids.requests)
        self._observe(kids.latency, _elapsed(call))
        # The other series are created on first use, so /metrics shows no series that never moved.
        if f.upstream_ms is not None:
            if kids.upstream is None:
                kids.upstream = self._child(self.upstream, provider, model)
            self._observe(kids.upstream, f.upstream_ms / 1000)
        if f.ttft_ms is not None:
            if kids.ttft is None:
                kids.ttft = self._child(self.ttft, provider, model)
            self._observe(kids.ttft, f.ttft_ms / 1000)
        if f.attempts:
            if kids.attempts is None:
                kids.attempts = self._child(self.attempts, provider)
            self._inc(kids.attempts, f.attempts)
        usage = outcome.usage
        if usage is not None and not f.cached:
            if usage.prompt_tokens:
                if kids.prompt_tokens is None:
                    kids.prompt_tokens = self._child(self.tokens, project, model, "prompt")
                self._inc(kids.prompt_tokens, usage.prompt_tokens)
            if usage.completion_tokens:
                if kids.completion_tokens is None:
                    kids.completion_tokens = self._child(self.tokens, project, model, "completion")
                self._inc(kids.completion_tokens, usage.completion_tokens)
        if outcome.cost_micros:
            if kids.cost is None:
                kids.cost = self._child(self.cost, project, model)
            self._inc(kids.cost, outcome.cost_micros / 1_000_000)
        if f.cached:
            self._inc(self._child(self.cache_hits, cache))
            if f.tokens_saved:
                self._inc(self._child(self.tokens_saved, cache), f.tokens_saved)
            if f.cost_saved_micros:
                self._inc(self._child(self.cost_saved, cache), f.cost_saved_micros / 1_000_000)
        if code is None and outcome.error is not None:
            code = outcome.error.code
        if code is None and status >= 400:
            code = "client_gone" if outcome.ended == "client_gone" else "error"
        if code is not None:
            label = code if code in ERROR_CODES or code in ("client_gone", "error") else "other"
            self._inc(self._child(self.errors, label))
            if label in REJECTION_CODES:
                self._inc(self._child(self.rejections, label))
        if f.dlp_findings:
            actions = f.extra.get("dlp_actions") or {}
            for detector, n in f.dlp_findings.items():
                by_action = actions.get(detector) or {"unknown": n}
                if detector not in self._detectors:
                    if len(self._detectors) >= MAX_DETECTORS:
                        detector = "other"
                    else:
                        self._detectors.add(detector)
                for action, count in by_action.items():
                    self._inc(self._child(self.dlp, detector, str(action)), count)

    def _project(self, project_id: str) -> str:
        if not self.cfg.project_labels:
            return ""
        if project_id in self._projects:
            return project_id
        if len(self._projects) < self.cfg.max_projects:
            self._projects.add(project_id)
            return project_id
        return "_other"

    def _kids_for(self, project: str, model: str, provider: str, status: int, cache: str) -> "_Kids":
        """The children one kind of request updates, looked up once per label combination (bounded)."""
        kids = _Kids(self._child(self.requests, project, model, provider, str(status), cache), self._child(self.latency, model, provider))
        self._kids[(project, model, provider, status, cache)] = kids
        return kids

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    # scrape-time gauges ------------------------------------------------------------------
    def refresh(self) -> None:
        """Update gauges read from other parts (called by ``GET /metrics`` before rendering)."""
        writer = self.services.usage
        if writer is not None:
            self.usage_queue.set(writer.queue_depth)
        circuits = self.services.extras.get("router.circuits")
        states: dict[str, str] = {}
        if callable(circuits):
            try:
                states = dict(circuits())
            except Exception:
                self.services.log.exception("metrics: router.circuits failed")
        open_providers = set()
        for target, state in states.items():
            value = CIRCUIT_STATES.get(str(state), 0)
            self._child(self.circuit, str(target)).set(value)
            if value == 2:
                open_providers.add(str(target).split("/", 1)[0])
        for name in self._providers:
            self._child(self.provider_up, name).set(0 if name in open_providers else 1)


@dataclass(slots=True)
class _Kids:
    """The metric children one label combination updates (see ``Metrics._count``)."""

    requests: Any
    latency: Any
    upstream: Any = None
    ttft: Any = None
    attempts: Any = None
    prompt_tokens: Any = None
    completion_tokens: Any = None
    cost: Any = None


class _FlushOnCollect:
    """A collector with no metrics of its own: reading the registry applies the pending updates first."""

    def __init__(self, flush: Any) -> None:
        self._flush = flush

    def collect(self) -> list[Any]:
        self._flush()
        return []


def _elapsed(call: Call) -> float:
    return time.perf_counter() - call.started
