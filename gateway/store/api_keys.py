"""API keys: only the key id, a display prefix and a hash of the secret are stored.

Key format and hashing live in ``gateway/crypto.py``. ``lookup`` is the one query the
``auth`` middleware runs on a cache miss; ``touch_many`` is its batched ``last_used_at``.
"""
from __future__ import annotations

from typing import Any, Mapping

from .base import Repository, repository

_PUBLIC = "id, project_id, name, prefix, is_test, created_at, created_by, expires_at, revoked_at, last_used_at"


def _public(row: Any) -> dict[str, Any]:
    out = dict(row)
    out["is_test"] = bool(out["is_test"])
    return out


@repository("api_keys")
class ApiKeyRepo(Repository):
    async def create(
        self, *, key_id: str, project_id: str, prefix: str, secret_hash: bytes, is_test: bool = False,
        name: str = "", created_by: str | None = None, expires_at: float | None = None,
    ) -> dict[str, Any]:
        row = {
            "id": key_id, "project_id": project_id, "name": name, "prefix": prefix, "secret_hash": secret_hash,
            "is_test": int(is_test), "created_at": self.store.clock(), "created_by": created_by, "expires_at": expires_at,
        }
        await self.store.execute(
            "INSERT INTO api_keys (id, project_id, name, prefix, secret_hash, is_test, created_at, created_by, expires_at) "
            "VALUES (:id, :project_id, :name, :prefix, :secret_hash, :is_test, :created_at, :created_by, :expires_at)", row,
        )
        got = await self.get(key_id)
        assert got is not None
        return got

    async def get(self, key_id: str, project_id: str | None = None) -> dict[str, Any] | None:
        if project_id is None:
            row = await self.store.fetchone(f"SELECT {_PUBLIC} FROM api_keys WHERE id = ?", (key_id,))
        else:
            row = await self.store.fetchone(f"SELECT {_PUBLIC} FROM api_keys WHERE id = ? AND project_id = ?", (key_id, project_id))
        return _public(row) if row else None

    async def lookup(self, key_id: str) -> dict[str, Any] | None:
        """The key (with ``secret_hash``) joined with its project, for authentication.

        Returns revoked and expired keys too (the caller decides), None when unknown.
        """
        row = await self.store.fetchone(
            "SELECT k.id, k.project_id, k.prefix, k.secret_hash, k.is_test, k.expires_at, k.revoked_at, "
            "p.name AS project_name, p.org_id, p.plan, p.team_id, p.settings "
            "FROM api_keys k JOIN projects p ON p.id = k.project_id WHERE k.id = ?",
            (key_id,),
        )
        return dict(row) if row else None

    async def list(self, project_id: str, *, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        rows = await self.store.fetchall(
            f"SELECT {_PUBLIC} FROM api_keys WHERE project_id = ? ORDER BY created_at, id LIMIT ? OFFSET ?", (project_id, limit, offset)
        )
        total = await self.store.fetchone("SELECT COUNT(*) FROM api_keys WHERE project_id = ?", (project_id,))
        return [_public(r) for r in rows], int(total[0]) if total else 0

    async def revoke(self, key_id: str, project_id: str | None = None) -> bool:
        """Mark revoked (kept for audit). False when unknown, already revoked or another project's."""
        now = self.store.clock()
        if project_id is None:
            n = await self.store.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (now, key_id))
        else:
            n = await self.store.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND project_id = ? AND revoked_at IS NULL", (now, key_id, project_id)
            )
        return n > 0

    async def touch_many(self, last_used: Mapping[str, float]) -> None:
        """Batched ``last_used_at`` (one transaction for many keys); never moves backwards."""
        if last_used:
            await self.store.executemany(
                "UPDATE api_keys SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)",
                [(ts, kid, ts) for kid, ts in last_used.items()],
            )
