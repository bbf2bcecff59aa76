"""A project's own provider credentials, stored only as AES-256-GCM ciphertext.

Encryption happens in ``gateway/crypto.py`` before the bytes reach this file; the
plaintext never enters SQL. ``hint`` is the last four characters, for display.
"""
from __future__ import annotations

from typing import Any

from .base import Repository, repository


@repository("provider_keys")
class ProviderKeyRepo(Repository):
    async def put(self, project_id: str, provider: str, ciphertext: bytes, key_id: str, hint: str) -> dict[str, Any]:
        now = self.store.clock()
        await self.store.execute(
            "INSERT INTO provider_keys (project_id, provider, ciphertext, key_id, hint, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(project_id, provider) DO UPDATE SET "
            "ciphertext = excluded.ciphertext, key_id = excluded.key_id, hint = excluded.hint, updated_at = excluded.updated_at",
            (project_id, provider, ciphertext, key_id, hint, now, now),
        )
        return {"project_id": project_id, "provider": provider, "hint": hint, "key_id": key_id, "updated_at": now}

    async def list(self, project_id: str) -> list[dict[str, Any]]:
        """Metadata only, never the ciphertext."""
        rows = await self.store.fetchall(
            "SELECT project_id, provider, key_id, hint, created_at, updated_at FROM provider_keys WHERE project_id = ? ORDER BY provider",
            (project_id,),
        )
        return [dict(r) for r in rows]

    async def ciphertexts(self, project_id: str) -> dict[str, bytes]:
        """provider → ciphertext, for decryption by the caller."""
        rows = await self.store.fetchall("SELECT provider, ciphertext FROM provider_keys WHERE project_id = ?", (project_id,))
        return {str(r["provider"]): bytes(r["ciphertext"]) for r in rows}

    async def all_rows(self) -> list[dict[str, Any]]:
        """Every row with ciphertext (master-key rotation job)."""
        return [dict(r) for r in await self.store.fetchall("SELECT project_id, provider, ciphertext, key_id FROM provider_keys")]

    async def delete(self, project_id: str, provider: str) -> bool:
        return await self.store.execute("DELETE FROM provider_keys WHERE project_id = ? AND provider = ?", (project_id, provider)) > 0
