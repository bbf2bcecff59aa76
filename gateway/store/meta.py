"""Small key/value settings the gateway persists for itself (e.g. a generated JWT secret)."""
from __future__ import annotations

from .base import Repository, repository


@repository("meta")
class MetaRepo(Repository):
    async def get(self, key: str) -> str | None:
        row = await self.store.fetchone("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else str(row["value"])

    async def get_or_set(self, key: str, value: str) -> str:
        """Insert ``value`` unless the key exists; return the stored one (first writer wins across processes)."""
        await self.store.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (key, value))
        stored = await self.get(key)
        assert stored is not None
        return stored

    async def set(self, key: str, value: str) -> None:
        await self.store.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))
