"""Organizations: the top of the tenancy tree. Users, teams and projects belong to one."""
from __future__ import annotations

from typing import Any

from .base import Repository, new_id, repository

DEFAULT_ORG = "default"


@repository("orgs")
class OrgRepo(Repository):
    async def create(self, name: str) -> dict[str, Any]:
        org = {"id": new_id("org_"), "name": name, "created_at": self.store.clock()}
        await self.store.execute("INSERT INTO orgs (id, name, created_at) VALUES (:id, :name, :created_at)", org)
        return org

    async def get(self, org_id: str) -> dict[str, Any] | None:
        row = await self.store.fetchone("SELECT * FROM orgs WHERE id = ?", (org_id,))
        return dict(row) if row else None

    async def by_name(self, name: str) -> dict[str, Any] | None:
        row = await self.store.fetchone("SELECT * FROM orgs WHERE name = ?", (name,))
        return dict(row) if row else None

    async def ensure(self, name: str = DEFAULT_ORG) -> dict[str, Any]:
        """The org called ``name``, created if missing (bootstrap and CLI)."""
        await self.store.execute(
            "INSERT OR IGNORE INTO orgs (id, name, created_at) VALUES (?, ?, ?)", (new_id("org_"), name, self.store.clock())
        )
        org = await self.by_name(name)
        assert org is not None
        return org
