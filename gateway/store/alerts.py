"""Alerts and their events. Organization-scoped; ``project_id`` NULL means the whole org.

An alert is ``ok`` or ``firing``. ``fire`` moves it ok → firing with a conditional
UPDATE and, in the same transaction, writes the event and one pending webhook delivery
per subscribed webhook: with several worker processes evaluating, exactly one wins the
transition, and an event never exists without its deliveries. ``resolve`` re-arms it.
"""
from __future__ import annotations

from typing import Any

import orjson

from .base import Repository, new_id, repository

__all__ = ["AlertRepo", "ALERT_TYPES"]

ALERT_TYPES = ("cost_spike", "error_rate", "slow_response", "budget")
_UPDATABLE = ("name", "project_id", "metric", "threshold", "window_s", "enabled", "settings")


def _alert(row: Any) -> dict[str, Any]:
    out = dict(row)
    out["settings"] = orjson.loads(out.get("settings") or "{}")
    out["enabled"] = bool(out["enabled"])
    return out


def _event(row: Any) -> dict[str, Any]:
    return dict(row)


@repository("alerts")
class AlertRepo(Repository):
    async def create(self, *, org_id: str, name: str, metric: str, threshold: float, window_s: int = 300,
                     project_id: str | None = None, enabled: bool = True, settings: dict[str, Any] | None = None) -> dict[str, Any]:
        now = self.store.clock()
        row = {"id": new_id("alert_"), "org_id": org_id, "project_id": project_id, "name": name, "metric": metric,
               "threshold": float(threshold), "window_s": int(window_s), "enabled": int(enabled),
               "settings": orjson.dumps(settings or {}).decode(), "created_at": now, "updated_at": now}
        await self.store.execute(
            "INSERT INTO alerts (id, org_id, project_id, name, metric, threshold, window_s, enabled, settings, created_at, updated_at) "
            "VALUES (:id, :org_id, :project_id, :name, :metric, :threshold, :window_s, :enabled, :settings, :created_at, :updated_at)",
            row,
        )
        got = await self.get(row["id"], org_id)
        assert got is not None
        return got

    async def get(self, alert_id: str, org_id: str) -> dict[str, Any] | None:
        row = await self.store.fetchone("SELECT * FROM alerts WHERE id = ? AND org_id = ?", (alert_id, org_id))
        return _alert(row) if row else None

    async def list(self, org_id: str, *, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        rows = await self.store.fetchall(
            "SELECT * FROM alerts WHERE org_id = ? ORDER BY created_at, id LIMIT ? OFFSET ?", (org_id, limit, offset)
        )
        total = await self.store.fetchone("SELECT COUNT(*) FROM alerts WHERE org_id = ?", (org_id,))
        return [_alert(r) for r in rows], int(total[0]) if total else 0

    async def update(self, alert_id: str, org_id: str, **fields: Any) -> dict[str, Any] | None:
        """Change fields; a changed threshold, type, window or scope re-arms the alert (state ok)."""
        sets = {k: v for k, v in fields.items() if k in _UPDATABLE}
        if "settings" in sets:
            sets["settings"] = orjson.dumps(sets["settings"] or {}).decode()
        if "enabled" in sets:
            sets["enabled"] = int(bool(sets["enabled"]))
        if not sets:
            return await self.get(alert_id, org_id)
        assignments = ", ".join(f"{k} = :{k}" for k in sets)
        n = await self.store.execute(
            f"UPDATE alerts SET {assignments}, state = 'ok', updated_at = :now WHERE id = :id AND org_id = :org_id",
            {**sets, "now": self.store.clock(), "id": alert_id, "org_id": org_id},
        )
        return await self.get(alert_id, org_id) if n else None

    async def delete(self, alert_id: str, org_id: str) -> bool:
        return await self.store.execute("DELETE FROM alerts WHERE id = ? AND org_id = ?", (alert_id, org_id)) > 0

    async def enabled(self, *, limit: int = 10_000) -> list[dict[str, Any]]:
        """Every enabled alert of every organization (the evaluator's work list)."""
        rows = await self.store.fetchall("SELECT * FROM alerts WHERE enabled = 1 ORDER BY id LIMIT ?", (limit,))
        return [_alert(r) for r in rows]

    async def note_value(self, alert_id: str, value: float | None, now: float) -> None:
        await self.store.execute("UPDATE alerts SET last_value = ?, last_evaluated_at = ? WHERE id = ?", (value, now, alert_id))

    async def fire(self, alert: dict[str, Any], *, value: float, message: str, now: float,
                   payload: dict[str, Any], webhooks: list[str]) -> dict[str, Any] | None:
        """ok → firing. Returns the event, or None when another evaluator already fired it."""
        event_id = str(payload["id"])
        async with self.store.tx() as db:
            cur = await db.execute(
                "UPDATE alerts SET state = 'firing', last_fired_at = ?, last_value = ?, last_evaluated_at = ? "
                "WHERE id = ? AND state = 'ok' AND enabled = 1",
                (now, value, now, alert["id"]),
            )
            if cur.rowcount != 1:
                return None
            event = {"id": event_id, "alert_id": alert["id"], "org_id": alert["org_id"], "project_id": alert["project_id"],
                     "kind": "fired", "value": value, "threshold": alert["threshold"], "message": message, "created_at": now}
            await db.execute(
                "INSERT INTO alert_events (id, alert_id, org_id, project_id, kind, value, threshold, message, created_at) "
                "VALUES (:id, :alert_id, :org_id, :project_id, :kind, :value, :threshold, :message, :created_at)", event,
            )
            body = orjson.dumps(payload).decode()
            await db.executemany(
                "INSERT INTO webhook_deliveries (id, webhook_id, event, event_id, payload, status, attempts, next_attempt_at, created_at) "
                "VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?)",
                [(new_id("dlv_"), hook_id, payload["type"], event_id, body, now, now) for hook_id in webhooks],
            )
        return event

    async def resolve(self, alert: dict[str, Any], *, value: float, message: str, now: float,
                      payload: dict[str, Any] | None = None, webhooks: list[str] = ()) -> dict[str, Any] | None:  # type: ignore[assignment]
        """firing → ok (re-armed). Records a ``resolved`` event; None when not firing."""
        event_id = str(payload["id"]) if payload else new_id("evt_")
        async with self.store.tx() as db:
            cur = await db.execute(
                "UPDATE alerts SET state = 'ok', last_value = ?, last_evaluated_at = ? WHERE id = ? AND state = 'firing'",
                (value, now, alert["id"]),
            )
            if cur.rowcount != 1:
                return None
            event = {"id": event_id, "alert_id": alert["id"], "org_id": alert["org_id"], "project_id": alert["project_id"],
                     "kind": "resolved", "value": value, "threshold": alert["threshold"], "message": message, "created_at": now}
            await db.execute(
                "INSERT INTO alert_events (id, alert_id, org_id, project_id, kind, value, threshold, message, created_at) "
                "VALUES (:id, :alert_id, :org_id, :project_id, :kind, :value, :threshold, :message, :created_at)", event,
            )
            if payload and webhooks:
                body = orjson.dumps(payload).decode()
                await db.executemany(
                    "INSERT INTO webhook_deliveries (id, webhook_id, event, event_id, payload, status, attempts, next_attempt_at, created_at) "
                    "VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?)",
                    [(new_id("dlv_"), hook_id, payload["type"], event_id, body, now, now) for hook_id in webhooks],
                )
        return event

    async def events(self, org_id: str, *, alert_id: str | None = None, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        where, params = "org_id = ?", [org_id]
        if alert_id:
            where += " AND alert_id = ?"
            params.append(alert_id)
        rows = await self.store.fetchall(
            f"SELECT * FROM alert_events WHERE {where} ORDER BY created_at DESC, id LIMIT ? OFFSET ?", (*params, limit, offset)
        )
        total = await self.store.fetchone(f"SELECT COUNT(*) FROM alert_events WHERE {where}", params)
        return [_event(r) for r in rows], int(total[0]) if total else 0

    async def cost_micros(self, *, since: float, project_id: str | None = None, org_id: str | None = None) -> int:
        """Spend since ``since`` (micro-USD) for a project, or the whole organization."""
        if project_id is not None:
            row = await self.store.fetchone(
                "SELECT COALESCE(SUM(cost_micros), 0) FROM usage WHERE project_id = ? AND created_at >= ?", (project_id, since)
            )
        else:
            row = await self.store.fetchone(
                "SELECT COALESCE(SUM(cost_micros), 0) FROM usage WHERE project_id IN (SELECT id FROM projects WHERE org_id = ?) "
                "AND created_at >= ?", (org_id, since),
            )
        return int(row[0]) if row else 0
