"""What ``GET /v1/providers`` and ``GET /providers/health`` show.

``/v1/providers`` is passive and cheap: the configured provider instances, their type,
the models the aliases route to on each, and every target's circuit state. It shows
names only: never an API key, base URL credentials or any other option value.

``/providers/health`` is active: it asks each provider for its model list (the
cheapest call every provider has) with a timeout and reports ok/error and latency.
Results are cached for ``health_cache_seconds`` and concurrent callers share one probe
run, so the endpoint cannot be used to multiply traffic to the upstreams.
"""
from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from . import Router

__all__ = ["providers_view", "providers_health"]


def providers_view(router: "Router") -> dict[str, Any]:
    cfg = router.services.config
    out: dict[str, dict[str, Any]] = {}
    for name, entry in cfg.providers.items():
        out[name] = {"id": name, "type": str(entry.extra.get("type", entry.name)), "models": [], "aliases": [], "targets": {}}
    for alias, mc in cfg.models.items():
        for t in mc.targets:
            p = out.get(t.provider)
            if p is None:
                continue
            if t.model not in p["models"]:
                p["models"].append(t.model)
            if alias not in p["aliases"]:
                p["aliases"].append(alias)
            st = router.states.get(t.name)
            if st is not None and t.model not in p["targets"]:
                p["targets"][t.model] = {
                    **st.breaker.snapshot(),
                    "in_flight": st.in_flight,
                    "latency_ewma_ms": None if st.ewma_ms is None else round(st.ewma_ms, 1),
                    "requests": st.requests,
                    "failures": st.failures,
                }
    for p in out.values():
        states = [t["state"] for t in p["targets"].values()]
        p["circuit"] = "open" if states and all(s == "open" for s in states) else (
            "degraded" if any(s != "closed" for s in states) else "closed")
    return {"object": "list", "data": list(out.values()), "disabled": list(cfg.disabled_providers)}


async def _probe(name: str, provider: Any, timeout: float) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            models = await provider.list_models()
        return {"id": name, "status": "ok", "latency_ms": round((time.perf_counter() - started) * 1000, 1),
                "models": len(models or ())}
    except TimeoutError:
        return {"id": name, "status": "error", "error": "timeout", "latency_ms": round(timeout * 1000, 1)}
    except Exception as exc:  # report the kind of failure, never a message that may echo a secret
        code = getattr(exc, "code", None) or type(exc).__name__
        return {"id": name, "status": "error", "error": str(code),
                "latency_ms": round((time.perf_counter() - started) * 1000, 1)}


async def _run(router: "Router") -> dict[str, Any]:
    providers = router.services.providers
    results = await asyncio.gather(*(_probe(n, p, router.cfg.health_timeout) for n, p in providers.items()))
    ok = all(r["status"] == "ok" for r in results)
    body = {"status": "ok" if ok else "degraded", "checked_at": time.time(), "providers": list(results)}
    router._health_cache = (time.monotonic(), body)
    return body


async def providers_health(router: "Router") -> dict[str, Any]:
    cached = router._health_cache
    if cached is not None and time.monotonic() - cached[0] < router.cfg.health_cache_seconds:
        return {**cached[1], "cached": True}
    task = router._health_task
    if task is None or task.done():
        task = router._health_task = asyncio.ensure_future(_run(router))
    body = await asyncio.shield(task)
    return {**body, "cached": False}
