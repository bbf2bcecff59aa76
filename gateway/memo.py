"""ProjectMemo: per-tenant values a middleware derives from a project's settings, computed once.

Rate-limit specs and budget scopes depend only on the project (and its settings), the key, the
model and the UTC day, yet were rebuilt on every request. A memo entry is reused while the
project's ``settings`` object is the very same one: auth builds a new Project (and settings
dict) when it reloads a project from the store, so a settings change is picked up with the
auth cache's TTL. Bounded: past ``max_entries`` it starts over.
"""
from __future__ import annotations

from typing import Any, Callable, Generic, Hashable, TypeVar

__all__ = ["ProjectMemo"]

T = TypeVar("T")


class ProjectMemo(Generic[T]):
    def __init__(self, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self._entries: dict[Hashable, tuple[Any, T]] = {}

    def get(self, key: Hashable, settings: Any, compute: Callable[[], T]) -> T:
        hit = self._entries.get(key)
        if hit is not None and hit[0] is settings:
            return hit[1]
        value = compute()
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = (settings, value)
        return value
