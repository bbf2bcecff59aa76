"""Projects: the tenants. ``settings`` holds the per-tenant limits and budget as JSON.

Known settings (validated by the admin API, enforced by the limits/budget middlewares):
``rpm``, ``tpm``, ``max_concurrency`` (ints), ``budget_micros`` (int, micro-USD per
``budget_period``: "day" | "month"), ``allowed_models`` (list of aliases),
``semantic_cache`` (bool).
"""
from __future__ import annotations

from typing import Any

import orjson

from .base import Repository, new_id, repository


def _row(row: Any) -> dict[str, Any]:
    out = dict(row)
    out["settings"] = orjson.loads(out.get("settings") or "{}")
    return out


@repository("projects")
class ProjectRepo(Repository):
    async def create(
        self, *, org_id: str, name: str, plan: str = "free", team_id: str | None = None, settings: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        project = {
            "id": new_id("proj_"), "org_id": org_id, "team_id": team_id, "name": name, "plan": plan,
            "settings": orjson.dumps(settings or {}).decode(), "created_at": self.store.clock(),
        }
        await self.store.execute(
            "INSERT INTO projects (id, org_id, team_id, name, plan, settings, created_at) "
            "VALUES (:id, :org_id, :team_id, :name, :plan, :settings, :created_at)", project,
        )
        return {**project, "settings": settings or {}}

    async def get(self, project_id: str, org_id: str | None = None) -> dict[str, Any] | None:
        """The project, or None; with ``org_id`` also None when it belongs to another org (IDOR)."""
        if org_id is None:
            row = await self.store.fetchone("SELECT * FROM projects WHERE id = ?", (project_id,))
        else:
            row = await self.store.fetchone("SELECT * FROM projects WHERE id = ? AND org_id = ?", (project_id, org_id))
        return _row(row) if row else None

    async def by_name(self, org_id: str, name: str) -> dict[str, Any] | None:
        row = await self.store.fetchone("SELECT * FROM projects WHERE org_id = ? AND name = ?", (org_id, name))
        return _row(row) if row else None

    async def list(self, org_id: str, *, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        rows = await self.store.fetchall(
            "SELECT * FROM projects WHERE org_id = ? ORDER BY created_at, id LIMIT ? OFFSET ?", (org_id, limit, offset)
        )
        total = await self.store.fetchone("SELECT COUNT(*) FROM projects WHERE org_id = ?", (org_id,))
        return [_row(r) for r in rows], int(total[0]) if total else 0

    async def update(self, project_id: str, org_id: str, **fields: Any) -> dict[str, Any] | None:
        allowed = {"name", "plan", "team_id", "settings"}
        sets = {k: v for k, v in fields.items() if k in allowed}
        if "settings" in sets:
            sets["settings"] = orjson.dumps(sets["settings"]).decode()
        if sets:
            assignments = ", ".join(f"{k} = :{k}" for k in sets)  # keys come from the allowlist above
            await self.store.execute(
                f"UPDATE projects SET {assignments} WHERE id = :_id AND org_id = :_org", {**sets, "_id": project_id, "_org": org_id}
            )
        return await self.get(project_id, org_id)

    async def delete(self, project_id: str, org_id: str) -> bool:
        """Delete the project; its API keys and provider keys go with it (ON DELETE CASCADE)."""
        return await self.store.execute("DELETE FROM projects WHERE id = ? AND org_id = ?", (project_id, org_id)) > 0
