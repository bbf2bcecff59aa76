"""The in-process cache: per project, an exact map and one FAISS index per scope.

Each scope (project, model, system prompt, tools, parameters; see exact.py) has its
own ``IndexIDMap2(IndexFlatIP)`` over unit vectors, so inner product is cosine and a
search can never return another scope's (or tenant's) entry. Flat, not HNSW: HNSW
cannot remove ids, and a flat search is under 1 ms at 10k entries on this machine.

Bounds: every entry has a TTL (expired entries are skipped at once and removed in
the next sweep) and each project holds at most ``max_entries``; over that, expired
entries go first, then the oldest, in one batch (``remove_ids`` costs O(N), so one
removal per batch rather than per entry).

Not thread-safe: it is only touched from the event loop.
"""
from __future__ import annotations

import time
from typing import Any, Iterable

from .entry import Entry

__all__ = ["CacheIndex", "ProjectCache"]


class _ScopeIndex:
    __slots__ = ("index", "size")

    def __init__(self, dim: int) -> None:
        import faiss

        self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self.size = 0


class ProjectCache:
    """One tenant's entries. Insertion order is age order (dicts keep it)."""

    __slots__ = ("entries", "exact", "scopes", "last_sweep")

    def __init__(self) -> None:
        self.entries: dict[int, Entry] = {}
        self.exact: dict[str, int] = {}
        self.scopes: dict[str, _ScopeIndex] = {}
        self.last_sweep = time.time()


class CacheIndex:
    def __init__(self, *, dim: int = 384, max_entries: int = 10000, eviction_batch: int = 256, sweep_every: float = 60.0) -> None:
        self.dim = dim
        self.max_entries = max_entries
        self.eviction_batch = eviction_batch
        self.sweep_every = sweep_every
        self.projects: dict[str, ProjectCache] = {}

    # reads ---------------------------------------------------------------------
    def get_exact(self, project: str, exact_key: str, now: float | None = None) -> Entry | None:
        pc = self.projects.get(project)
        if pc is None:
            return None
        eid = pc.exact.get(exact_key)
        if eid is None:
            return None
        entry = pc.entries.get(eid)
        if entry is None or entry.expires <= (now or time.time()):
            return None
        return entry

    def search(self, project: str, scope: str, vector: Any, k: int = 4, now: float | None = None) -> list[tuple[float, Entry]]:
        """Nearest live entries of one scope, best first, as ``(cosine, entry)``."""
        pc = self.projects.get(project)
        si = pc.scopes.get(scope) if pc else None
        if pc is None or si is None or si.size == 0:
            return []
        scores, ids = si.index.search(vector.reshape(1, -1), min(k, si.size))
        now = now or time.time()
        out = []
        for score, eid in zip(scores[0], ids[0]):
            entry = pc.entries.get(int(eid))
            if eid >= 0 and entry is not None and entry.expires > now:
                out.append((float(score), entry))
        return out

    def size(self, project: str) -> int:
        pc = self.projects.get(project)
        return len(pc.entries) if pc else 0

    # writes --------------------------------------------------------------------
    def add(self, entry: Entry, now: float | None = None) -> list[int]:
        """Insert (or replace, by id) an entry; return the ids evicted to stay within bounds."""
        import numpy as np

        now = now or time.time()
        pc = self.projects.setdefault(entry.project, ProjectCache())
        if entry.id in pc.entries:
            self.remove(entry.project, [entry.id])
        pc.entries[entry.id] = entry
        old = pc.exact.get(entry.exact_key)
        pc.exact[entry.exact_key] = entry.id
        evicted: list[int] = []
        if old is not None and old != entry.id:  # the same request stored twice: keep the newest
            evicted.append(old)
        if entry.vector is not None:
            si = pc.scopes.get(entry.scope)
            if si is None:
                si = pc.scopes[entry.scope] = _ScopeIndex(self.dim)
            si.index.add_with_ids(entry.vector.reshape(1, -1).astype(np.float32), np.array([entry.id], dtype=np.int64))
            si.size += 1
        if len(pc.entries) > self.max_entries or now - pc.last_sweep > self.sweep_every:
            evicted.extend(self._victims(pc, now))
        if evicted:
            self.remove(entry.project, evicted)
        return evicted

    def _victims(self, pc: ProjectCache, now: float) -> list[int]:
        pc.last_sweep = now
        victims = [eid for eid, e in pc.entries.items() if e.expires <= now]
        overflow = len(pc.entries) - len(victims) - self.max_entries
        if overflow > 0:
            extra = overflow + min(self.eviction_batch, self.max_entries // 10)
            dead = set(victims)
            for eid in pc.entries:
                if extra <= 0:
                    break
                if eid not in dead:
                    victims.append(eid)
                    extra -= 1
        return victims

    def remove(self, project: str, ids: Iterable[int]) -> int:
        """Remove entries by id, one FAISS ``remove_ids`` per scope. Unknown ids are ignored."""
        import numpy as np

        pc = self.projects.get(project)
        if pc is None:
            return 0
        by_scope: dict[str, list[int]] = {}
        removed = 0
        for eid in ids:
            entry = pc.entries.pop(eid, None)
            if entry is None:
                continue
            removed += 1
            if pc.exact.get(entry.exact_key) == eid:
                del pc.exact[entry.exact_key]
            if entry.vector is not None:
                by_scope.setdefault(entry.scope, []).append(eid)
        for scope, sids in by_scope.items():
            si = pc.scopes.get(scope)
            if si is None:
                continue
            si.size -= int(si.index.remove_ids(np.array(sids, dtype=np.int64)))
            if si.size <= 0:
                del pc.scopes[scope]
        if not pc.entries:
            self.projects.pop(project, None)
        return removed

    def flush(self, project: str) -> int:
        pc = self.projects.pop(project, None)
        return len(pc.entries) if pc else 0
