"""Embedding backends: the reference model loads offline; the ONNX export matches it; errors are clear."""
from __future__ import annotations

import asyncio

import pytest

pytestmark = pytest.mark.semantic


def test_reference_backend_gives_unit_vectors_that_rank_a_paraphrase_above_an_unrelated_text(minilm):
    v = minilm.encode(["How do I reset my password?", "How can I reset my password?", "Best pizza in Naples"])
    assert v.shape == (3, 384)
    assert abs(float((v[0] ** 2).sum()) - 1.0) < 1e-4
    assert float(v[0] @ v[1]) > 0.9 > 0.3 > float(v[0] @ v[2])


async def test_concurrent_texts_are_embedded_in_fewer_batches_with_the_right_vectors(minilm):
    from plugins.middleware.semantic_cache.embedder import EmbeddingRunner

    runner = EmbeddingRunner(minilm, batch_max=8)
    texts = [f"question number {i} about databases" for i in range(20)]
    vecs = await asyncio.gather(*(runner.embed(t) for t in texts))
    ref = minilm.encode(texts)
    assert runner.texts == 20 and runner.batches < 20
    assert all(float(a @ b) > 0.9999 for a, b in zip(vecs, ref))
    runner.close()


def test_onnx_backend_matches_the_reference(minilm, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from plugins.middleware.semantic_cache.embedder import OnnxBackend

    onnx = OnnxBackend(str(tmp_path / "minilm.onnx"))
    texts = ["Cancel my subscription", "How do I reset my password? " * 6, "x"]
    cos = (onnx.encode(texts) * minilm.encode(texts)).sum(1)
    assert cos.min() > 0.9999


def test_onnx_export_without_the_onnx_package_fails_with_an_instruction(tmp_path, monkeypatch):
    import sys

    from plugins.middleware.semantic_cache.embedder import ModelMissing, OnnxBackend

    monkeypatch.setitem(sys.modules, "onnx", None)  # simulate the package being absent
    with pytest.raises(ModelMissing, match="pip install onnx"):
        OnnxBackend(str(tmp_path / "missing.onnx"))
