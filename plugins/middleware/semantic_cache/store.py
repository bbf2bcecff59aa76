"""Where entries live: the ``CacheStore`` contract and the in-process store.

Lookups are synchronous and local (the exact map and FAISS live in this process,
so an exact hit costs microseconds even with Redis); writes are async because a
shared store must also publish them. ``RedisStore`` (redis_store.py) keeps the
same local index and mirrors it through Redis for the other replicas.
"""
from __future__ import annotations

from typing import Any, Protocol

from .entry import Entry
from .index import CacheIndex

__all__ = ["CacheStore", "MemoryStore"]


class CacheStore(Protocol):
    index: CacheIndex

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def get_exact(self, project: str, exact_key: str) -> Entry | None: ...

    def search(self, project: str, scope: str, vector: Any, k: int) -> list[tuple[float, Entry]]: ...

    async def put(self, entry: Entry) -> None: ...

    async def flush(self, project: str) -> int: ...


class MemoryStore:
    """Entries in this process only (the default, and every replica's local view)."""

    def __init__(self, index: CacheIndex) -> None:
        self.index = index

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def get_exact(self, project: str, exact_key: str) -> Entry | None:
        return self.index.get_exact(project, exact_key)

    def search(self, project: str, scope: str, vector: Any, k: int) -> list[tuple[float, Entry]]:
        return self.index.search(project, scope, vector, k)

    async def put(self, entry: Entry) -> None:
        self.index.add(entry)

    async def flush(self, project: str) -> int:
        return self.index.flush(project)
