"""One cached answer, and its wire form for Redis (orjson; the vector as raw float32 bytes).

The entry carries what a later request is compared with (``question``, ``context``,
the scope and exact key), the answer (the full ``chat.completion`` body) and the
model that served it (to count the cost a hit saves).
"""
from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from .guards import Facts, extract

__all__ = ["Entry", "Replay", "new_entry_id"]


class Replay(NamedTuple):
    """What every hit on an entry replays, worked out at its first hit (a reload brings new pricing)."""

    pricing: Any            # the Pricing the saving was computed with
    body: bytes             # the response as JSON, copied per hit with one orjson.loads
    usage: Any              # its Usage, or None
    tokens_saved: int
    cost_saved_micros: int


def new_entry_id() -> int:
    """A random positive int63: FAISS ids are int64, and replicas mint ids without coordinating."""
    return secrets.randbits(63) or 1


@dataclass(slots=True)
class Entry:
    id: int
    project: str
    scope: str
    exact_key: str
    question: str
    context: tuple[tuple[str, str], ...]
    response: dict[str, Any]
    model: str
    created: float
    expires: float
    vector: Any = None  # np.ndarray (dim,) float32, or None for exact-only entries
    _facts: Facts | None = field(default=None, repr=False)
    served: Replay | None = field(default=None, repr=False)

    @property
    def facts(self) -> Facts:
        if self._facts is None:
            self._facts = extract(self.question)
        return self._facts

    def dumps(self) -> bytes:
        vec = base64.b64encode(self.vector.tobytes()).decode() if self.vector is not None else None
        return orjson.dumps({
            "id": self.id, "project": self.project, "scope": self.scope, "exact_key": self.exact_key,
            "question": self.question, "context": self.context, "response": self.response, "model": self.model,
            "created": self.created, "expires": self.expires, "vector": vec,
        })

    @classmethod
    def loads(cls, raw: bytes | str) -> "Entry":
        import numpy as np

        d = orjson.loads(raw)
        vec = np.frombuffer(base64.b64decode(d["vector"]), dtype=np.float32).copy() if d.get("vector") else None
        return cls(
            id=int(d["id"]), project=d["project"], scope=d["scope"], exact_key=d["exact_key"], question=d["question"],
            context=tuple((r, t) for r, t in d["context"]), response=d["response"], model=d.get("model") or "",
            created=float(d["created"]), expires=float(d["expires"]), vector=vec,
        )
