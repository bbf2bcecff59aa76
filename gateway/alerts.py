"""The alert evaluator: a background task that measures every enabled alert each interval.

Types (``metric`` column) and their value:

* ``cost_spike`` — spend of the current UTC day, USD; fires when ``value > threshold``.
* ``error_rate`` — % of requests with status >= 400 over the last ``window_s``; fires when
  ``value > threshold`` (windows with fewer than ``settings.min_requests``, default 1,
  requests are skipped; an empty window counts as 0 %).
* ``slow_response`` — ``settings.stat`` = ``avg`` (default) or ``p95`` latency (ms) over
  ``window_s``; fires when ``value > threshold``.
* ``budget`` — % of the project's budget spent this budget period (``budget_micros`` /
  ``budget_period`` day|month, UTC, from the project settings); fires when
  ``value >= threshold``. Needs ``project_id``; skipped when the project has no budget.

An alert fires once per crossing: ok → firing writes an ``alert.fired`` event (and queues
webhook deliveries in the same transaction); while it stays over the line nothing more
happens; when the value goes back under, a ``resolved`` event re-arms it. The transition
is a conditional UPDATE, so several worker processes evaluating together fire it once.

``WATCHLLM_ALERT_INTERVAL_S`` (default 60) sets the interval.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from datetime import datetime, timezone
from typing import Any

from .store.base import new_id
from .store.usage import usage_filter

__all__ = ["AlertEvaluator", "measure", "interval_from_env"]

log = logging.getLogger("watchllm.alerts")


def interval_from_env() -> float:
    try:
        value = float(os.environ.get("WATCHLLM_ALERT_INTERVAL_S", "60"))
    except ValueError:
        log.warning("alerts: WATCHLLM_ALERT_INTERVAL_S is not a number; using 60")
        return 60.0
    return max(0.01, value)


def _utc_day(ts: float) -> float:
    d = datetime.fromtimestamp(ts, tz=timezone.utc)
    return datetime(d.year, d.month, d.day, tzinfo=timezone.utc).timestamp()


def _utc_month(ts: float) -> float:
    d = datetime.fromtimestamp(ts, tz=timezone.utc)
    return datetime(d.year, d.month, 1, tzinfo=timezone.utc).timestamp()


def _p95(sorted_values: list[float]) -> float:
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(0.95 * len(sorted_values)))  # nearest rank
    return sorted_values[rank - 1]


def _budget(settings: dict[str, Any]) -> tuple[int | None, str]:
    if settings.get("budget_micros") is not None:
        return int(settings["budget_micros"]), str(settings.get("budget_period") or "month")
    b = settings.get("budget")
    if isinstance(b, dict):
        if b.get("monthly_usd") is not None:
            return int(round(float(b["monthly_usd"]) * 1e6)), "month"
        if b.get("daily_usd") is not None:
            return int(round(float(b["daily_usd"]) * 1e6)), "day"
    return None, "month"


async def measure(store: Any, alert: dict[str, Any], now: float) -> tuple[float | None, str]:
    """(value, message); value None means "no verdict this time" (state unchanged)."""
    kind = alert["metric"]
    scope = {"project_id": alert["project_id"]} if alert["project_id"] else {"org_id": alert["org_id"]}
    where = f"project {alert['project_id']}" if alert["project_id"] else "the organization"
    settings = alert.get("settings") or {}
    window = int(alert["window_s"] or 300)
    threshold = alert["threshold"]
    if kind == "cost_spike":
        micros = await store.alerts.cost_micros(since=_utc_day(now), **scope)
        value = micros / 1e6
        return value, f"daily cost of {where} is ${value:.6f} (threshold ${threshold:g})"
    if kind == "error_rate":
        s = await store.usage.summary(usage_filter(**scope, since=now - window, until=now + 1))
        n, errors = int(s.get("requests") or 0), int(s.get("errors") or 0)
        if 0 < n < int(settings.get("min_requests", 1)):
            return None, ""
        value = errors / n * 100 if n else 0.0
        return value, f"error rate of {where} is {value:.2f}% ({errors}/{n}) over {window}s (threshold {threshold:g}%)"
    if kind == "slow_response":
        stat = settings.get("stat", "avg")
        f = usage_filter(**scope, since=now - window, until=now + 1)
        if stat == "p95":
            value = _p95(await store.usage.latencies(f))
        else:
            value = float((await store.usage.summary(f)).get("avg_latency_ms") or 0.0)
        return value, f"{stat} latency of {where} is {value:.1f} ms over {window}s (threshold {threshold:g} ms)"
    if kind == "budget":
        if not alert["project_id"]:
            return None, ""
        project = await store.projects.get(alert["project_id"], alert["org_id"])
        if project is None:
            return None, ""
        budget, period = _budget(project.get("settings") or {})
        if not budget:
            return None, ""
        since = _utc_day(now) if period == "day" else _utc_month(now)
        spent = await store.alerts.cost_micros(since=since, project_id=alert["project_id"])
        value = spent / budget * 100
        return value, (f"project {alert['project_id']} spent {value:.1f}% of its {period}ly budget "
                       f"(${spent / 1e6:.6f} of ${budget / 1e6:.6f}; threshold {threshold:g}%)")
    return None, ""


def _over(alert: dict[str, Any], value: float) -> bool:
    return value >= alert["threshold"] if alert["metric"] == "budget" else value > alert["threshold"]


def _payload(kind: str, alert: dict[str, Any], value: float, message: str, now: float) -> dict[str, Any]:
    return {
        "id": new_id("evt_"), "type": f"alert.{kind}", "created_at": now, "org_id": alert["org_id"],
        "alert": {"id": alert["id"], "name": alert["name"], "type": alert["metric"], "project_id": alert["project_id"],
                  "threshold": alert["threshold"], "window_s": alert["window_s"]},
        "value": value, "message": message,
    }


class AlertEvaluator:
    """``start()`` runs ``evaluate_once`` every ``interval_s``; ``stop()`` cancels it."""

    def __init__(self, services: Any, *, interval_s: float | None = None, dispatcher: Any = None) -> None:
        self.services = services
        self.interval_s = interval_s
        self.dispatcher = dispatcher
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def start(self) -> None:
        if self.interval_s is None:
            self.interval_s = interval_from_env()
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.create_task(self._run(), name="watchllm-alerts")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        assert self.interval_s is not None
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                await self.evaluate_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("alerts: evaluation pass failed")
            wait = max(0.0, self.interval_s - (time.monotonic() - started))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=wait)

    async def evaluate_once(self, now: float | None = None) -> list[dict[str, Any]]:
        """Measure every enabled alert; returns the events written by this pass."""
        store = self.services.store
        now = time.time() if now is None else now
        events: list[dict[str, Any]] = []
        for alert in await store.alerts.enabled():
            try:
                value, message = await measure(store, alert, now)
            except Exception:
                log.exception("alerts: measuring %s failed", alert["id"])
                continue
            if value is None:
                continue
            over = _over(alert, value)
            event = None
            if over and alert["state"] == "ok":
                payload = _payload("fired", alert, value, message, now)
                hooks = await store.webhooks.subscribed(alert["org_id"], alert["project_id"], payload["type"])
                event = await store.alerts.fire(alert, value=value, message=message, now=now, payload=payload, webhooks=hooks)
                if event is not None:
                    log.warning("alert %s fired: %s", alert["id"], message)
            elif not over and alert["state"] == "firing":
                payload = _payload("resolved", alert, value, message, now)
                hooks = await store.webhooks.subscribed(alert["org_id"], alert["project_id"], payload["type"])
                event = await store.alerts.resolve(alert, value=value, message=message, now=now, payload=payload, webhooks=hooks)
                if event is not None:
                    log.info("alert %s resolved: %s", alert["id"], message)
            else:
                await store.alerts.note_value(alert["id"], value, now)
            if event is not None:
                events.append(event)
        if events and self.dispatcher is not None:
            self.dispatcher.kick()
        return events
