"""DLP finding events: one row per finding (detector, action, project, request id) — never the value."""
from __future__ import annotations

from typing import Any, Sequence

from .base import Repository, repository

_INSERT = "INSERT OR IGNORE INTO dlp_events (id, request_id, project_id, detector, action, created_at) VALUES (?,?,?,?,?,?)"


@repository("dlp_events")
class DlpEventsRepo(Repository):
    async def insert_many(self, rows: Sequence[Sequence[Any]]) -> None:
        """Rows are ``(id, request_id, project_id, detector, action, created_at)``."""
        await self.store.executemany(_INSERT, rows)

    async def count(self, *, project_id: str, detector: str | None = None) -> int:
        sql = "SELECT COUNT(*) FROM dlp_events WHERE project_id = ?"
        params: list[Any] = [project_id]
        if detector:
            sql += " AND detector = ?"
            params.append(detector)
        row = await self.store.fetchone(sql, params)
        return int(row[0]) if row else 0
