"""Teams inside an organization and their members (a member's team role: admin or member)."""
from __future__ import annotations

from typing import Any

from .base import Repository, new_id, repository


@repository("teams")
class TeamRepo(Repository):
    async def create(self, org_id: str, name: str) -> dict[str, Any]:
        team = {"id": new_id("team_"), "org_id": org_id, "name": name, "created_at": self.store.clock()}
        await self.store.execute("INSERT INTO teams (id, org_id, name, created_at) VALUES (:id, :org_id, :name, :created_at)", team)
        return team

    async def get(self, team_id: str, org_id: str) -> dict[str, Any] | None:
        row = await self.store.fetchone("SELECT * FROM teams WHERE id = ? AND org_id = ?", (team_id, org_id))
        return dict(row) if row else None

    async def list(self, org_id: str, *, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        rows = await self.store.fetchall(
            "SELECT * FROM teams WHERE org_id = ? ORDER BY created_at, id LIMIT ? OFFSET ?", (org_id, limit, offset)
        )
        total = await self.store.fetchone("SELECT COUNT(*) FROM teams WHERE org_id = ?", (org_id,))
        return [dict(r) for r in rows], int(total[0]) if total else 0

    async def delete(self, team_id: str, org_id: str) -> bool:
        return await self.store.execute("DELETE FROM teams WHERE id = ? AND org_id = ?", (team_id, org_id)) > 0

    async def add_member(self, team_id: str, user_id: str, role: str) -> dict[str, Any]:
        member = {"team_id": team_id, "user_id": user_id, "role": role, "created_at": self.store.clock()}
        await self.store.execute(
            "INSERT INTO team_members (team_id, user_id, role, created_at) VALUES (:team_id, :user_id, :role, :created_at) "
            "ON CONFLICT(team_id, user_id) DO UPDATE SET role = excluded.role", member,
        )
        return member

    async def remove_member(self, team_id: str, user_id: str) -> bool:
        return await self.store.execute("DELETE FROM team_members WHERE team_id = ? AND user_id = ?", (team_id, user_id)) > 0

    async def members(self, team_id: str) -> list[dict[str, Any]]:
        rows = await self.store.fetchall(
            "SELECT m.user_id, u.email, m.role, m.created_at FROM team_members m JOIN users u ON u.id = m.user_id "
            "WHERE m.team_id = ? ORDER BY m.created_at", (team_id,),
        )
        return [dict(r) for r in rows]
