"""Webhooks (organization-scoped) and their deliveries.

``secret`` holds the signing secret: ``enc:`` + AES-GCM blob when ``WATCHLLM_MASTER_KEY``
is set (sealed by the caller, gateway/webhooks.py), else ``raw:`` + the secret. It is
never returned by ``get``/``list``.

A delivery is one (event, webhook) pair: ``pending`` → ``sending`` (claimed with a
lease, so a crashed process's claim expires) → ``delivered`` or, after the last
attempt, ``failed``; between attempts it is ``pending`` again with ``next_attempt_at``
set by the back-off. Every attempt is appended to ``attempt_log``.
"""
from __future__ import annotations

from typing import Any

import orjson

from .base import Repository, repository

__all__ = ["WebhookRepo"]

_PUBLIC = "id, org_id, project_id, name, url, events, enabled, created_at"


def _hook(row: Any) -> dict[str, Any]:
    out = dict(row)
    out["events"] = orjson.loads(out.get("events") or "[]")
    out["enabled"] = bool(out["enabled"])
    return out


def _delivery(row: Any) -> dict[str, Any]:
    out = dict(row)
    out["attempt_log"] = orjson.loads(out.get("attempt_log") or "[]")
    return out


@repository("webhooks")
class WebhookRepo(Repository):
    async def create(self, *, hook_id: str, org_id: str, url: str, secret: bytes, events: list[str],
                     name: str = "", project_id: str | None = None) -> dict[str, Any]:
        await self.store.execute(
            "INSERT INTO webhooks (id, org_id, project_id, name, url, secret, events, enabled, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?)",
            (hook_id, org_id, project_id, name, url, secret, orjson.dumps(events).decode(), self.store.clock()),
        )
        got = await self.get(hook_id, org_id)
        assert got is not None
        return got

    async def get(self, hook_id: str, org_id: str) -> dict[str, Any] | None:
        row = await self.store.fetchone(f"SELECT {_PUBLIC} FROM webhooks WHERE id = ? AND org_id = ?", (hook_id, org_id))
        return _hook(row) if row else None

    async def list(self, org_id: str, *, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        rows = await self.store.fetchall(
            f"SELECT {_PUBLIC} FROM webhooks WHERE org_id = ? ORDER BY created_at, id LIMIT ? OFFSET ?", (org_id, limit, offset)
        )
        total = await self.store.fetchone("SELECT COUNT(*) FROM webhooks WHERE org_id = ?", (org_id,))
        return [_hook(r) for r in rows], int(total[0]) if total else 0

    async def delete(self, hook_id: str, org_id: str) -> bool:
        return await self.store.execute("DELETE FROM webhooks WHERE id = ? AND org_id = ?", (hook_id, org_id)) > 0

    async def subscribed(self, org_id: str, project_id: str | None, event: str) -> list[str]:
        """Ids of enabled webhooks of the org that take ``event`` (org-wide hooks, or this project's)."""
        rows = await self.store.fetchall(
            "SELECT id, project_id, events FROM webhooks WHERE org_id = ? AND enabled = 1", (org_id,)
        )
        out = []
        for r in rows:
            events = orjson.loads(r["events"] or "[]")
            if (r["project_id"] is None or r["project_id"] == project_id) and (event in events or "*" in events):
                out.append(r["id"])
        return out

    async def target(self, hook_id: str) -> dict[str, Any] | None:
        """URL and stored secret for delivery (internal: never expose)."""
        row = await self.store.fetchone("SELECT id, org_id, url, secret, enabled FROM webhooks WHERE id = ?", (hook_id,))
        return dict(row) if row else None

    # deliveries -----------------------------------------------------------------
    async def due(self, now: float, *, limit: int = 50) -> list[dict[str, Any]]:
        rows = await self.store.fetchall(
            "SELECT * FROM webhook_deliveries WHERE status IN ('pending', 'sending') AND next_attempt_at <= ? "
            "ORDER BY next_attempt_at LIMIT ?", (now, limit),
        )
        return [_delivery(r) for r in rows]

    async def next_due_at(self) -> float | None:
        row = await self.store.fetchone(
            "SELECT MIN(next_attempt_at) FROM webhook_deliveries WHERE status IN ('pending', 'sending')"
        )
        return float(row[0]) if row and row[0] is not None else None

    async def claim(self, delivery_id: str, *, now: float, lease_s: float) -> bool:
        """Take a due delivery for one attempt (conditional UPDATE: one process wins)."""
        n = await self.store.execute(
            "UPDATE webhook_deliveries SET status = 'sending', attempts = attempts + 1, next_attempt_at = ? "
            "WHERE id = ? AND status IN ('pending', 'sending') AND next_attempt_at <= ?",
            (now + lease_s, delivery_id, now),
        )
        return n == 1

    async def record_attempt(self, delivery_id: str, *, attempt: dict[str, Any], status: str,
                             next_attempt_at: float | None, now: float) -> None:
        """Append ``attempt`` to the log; ``status`` is pending (retry), delivered or failed."""
        async with self.store.tx() as db:
            async with db.execute("SELECT attempt_log FROM webhook_deliveries WHERE id = ?", (delivery_id,)) as cur:
                row = await cur.fetchone()
            if row is None:
                return  # webhook deleted meanwhile (cascade)
            log = orjson.loads(row[0] or "[]")
            log.append(attempt)
            await db.execute(
                "UPDATE webhook_deliveries SET status = ?, next_attempt_at = ?, last_error = ?, response_status = ?, "
                "attempt_log = ?, delivered_at = ? WHERE id = ?",
                (status, next_attempt_at, attempt.get("error"), attempt.get("status_code"), orjson.dumps(log).decode(),
                 now if status == "delivered" else None, delivery_id),
            )

    async def deliveries(self, hook_id: str, *, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        rows = await self.store.fetchall(
            "SELECT * FROM webhook_deliveries WHERE webhook_id = ? ORDER BY created_at DESC, id LIMIT ? OFFSET ?",
            (hook_id, limit, offset),
        )
        total = await self.store.fetchone("SELECT COUNT(*) FROM webhook_deliveries WHERE webhook_id = ?", (hook_id,))
        return [_delivery(r) for r in rows], int(total[0]) if total else 0
