"""One real MiniLM backend per test session (loading it takes seconds)."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def minilm():
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("faiss")
    from plugins.middleware.semantic_cache.embedder import load_backend

    return load_backend("sentence_transformers")
