"""Semantic cache middleware: exact + FAISS semantic layers with correctness guards.

See docs/semantic_cache.md. Heavy libraries (torch, sentence-transformers, faiss)
are imported in ``SemanticCache.startup``, never when this package is imported.
"""
from .config import SemanticCacheConfig
from .middleware import SemanticCache

__all__ = ["SemanticCache", "SemanticCacheConfig"]
