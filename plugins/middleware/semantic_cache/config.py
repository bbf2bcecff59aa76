"""Options of the ``semantic_cache`` middleware (YAML) and the per-project overrides.

The defaults were picked from the curves in ``benchmarks/results/cache_eval.md``
(see docs/semantic_cache.md): ``threshold: 0.88`` with the guards and the edit verifier
on is the lowest threshold at which the trap false-hit rate stays under 2% (all traps,
single questions and conversations) while 89% of the trap paraphrases are still served.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

__all__ = ["SemanticCacheConfig", "ProjectCacheSettings", "project_settings"]


@dataclass(frozen=True, kw_only=True)
class SemanticCacheConfig:
    enabled: bool = field(default=True, metadata={"help": "default for projects without their own setting"})
    semantic: bool = field(default=True, metadata={"help": "false: exact layer only (no model is loaded)"})
    threshold: float = field(default=0.88, metadata={"help": "minimum cosine similarity of the last user message"})
    guards: bool = field(default=True, metadata={"help": "require agreement on numbers, dates, negations, entities, context"})
    verifier: bool = field(default=True, metadata={"help": "reject small edits that change the question (reorder, particle, prefix, question word)"})
    context_min_ratio: float = field(default=0.9, metadata={"help": "earlier turns: minimum word-sequence similarity"})
    ttl_seconds: float = field(default=86400.0, metadata={"help": "an entry expires this long after it was stored"})
    max_entries: int = field(default=10000, metadata={"help": "per project; the oldest are evicted in batches"})
    eviction_batch: int = field(default=256, metadata={"help": "entries removed at once (FAISS removal is O(N))"})
    max_temperature: float = field(default=1.0, metadata={"help": "requests with a higher temperature skip the cache"})
    top_k: int = field(default=4, metadata={"help": "nearest candidates checked by the guards"})
    backend: Literal["sentence_transformers", "onnx"] = "sentence_transformers"
    onnx_path: str = field(default="", metadata={"help": "model.onnx for the onnx backend (exported on first start if missing)"})
    batch_max: int = field(default=16, metadata={"help": "most texts embedded in one micro-batch"})
    store: Literal["auto", "memory", "redis"] = field(default="auto", metadata={"help": "auto: redis when state.url is redis://"})
    redis_prefix: str = "watchllm:cache"
    replay_pieces: int = field(default=8, metadata={"help": "content chunks a streamed hit is split into"})

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")
        if self.max_entries < 1 or self.eviction_batch < 1 or self.top_k < 1 or self.batch_max < 1:
            raise ValueError("max_entries, eviction_batch, top_k and batch_max must be >= 1")
        if self.ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be > 0")


@dataclass(frozen=True, slots=True)
class ProjectCacheSettings:
    """The effective settings for one request: the YAML defaults, overridden by the project's."""

    enabled: bool
    semantic: bool
    threshold: float


def project_settings(config: SemanticCacheConfig, raw: Mapping[str, Any] | bool | None) -> ProjectCacheSettings:
    """Merge ``project.settings["semantic_cache"]`` over the defaults.

    It is either a bool (on/off, what the admin API's settings accept today) or a mapping
    ``{enabled, semantic, threshold}``.

    Malformed values are ignored rather than failing the request: the project row is
    edited through the admin API, and a typo there must not take the project offline.
    """
    enabled, semantic, threshold = config.enabled, config.semantic, config.threshold
    if isinstance(raw, bool):
        enabled = raw
    elif isinstance(raw, Mapping):
        if isinstance(raw.get("enabled"), bool):
            enabled = raw["enabled"]
        if isinstance(raw.get("semantic"), bool):
            semantic = raw["semantic"] and config.semantic
        t = raw.get("threshold")
        if isinstance(t, (int, float)) and not isinstance(t, bool) and 0.0 < t <= 1.0:
            threshold = float(t)
    return ProjectCacheSettings(enabled, semantic, threshold)
