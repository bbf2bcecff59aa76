"""``GET /metrics``: the Prometheus exposition of the ``metrics`` middleware's registry.

The middleware is built after ``setup`` runs (in the server's lifecycle), so the
handler looks it up per scrape on ``services.metrics``. Without the middleware in the
pipeline the route answers 404 with a hint. With ``PROMETHEUS_MULTIPROC_DIR`` set, the
answer aggregates every worker process (prometheus-client multiprocess mode).
``WATCHLLM_METRICS_TOKEN``, when set, must be sent as ``Authorization: Bearer <token>``.
"""
from __future__ import annotations

import hmac
import os
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ..errors import GatewayError

__all__ = ["setup", "render"]


def render(metrics: Any) -> bytes:
    refresh = getattr(metrics, "refresh", None)
    if refresh is not None:
        refresh()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(getattr(metrics, "registry", metrics))


def setup(app: web.Application, services: Any) -> None:
    token = os.environ.get("WATCHLLM_METRICS_TOKEN", "")

    async def metrics(request: web.Request) -> web.Response:
        if token:
            sent = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(sent.encode(), token.encode()):
                err = GatewayError("invalid_api_key", "GET /metrics needs `Authorization: Bearer $WATCHLLM_METRICS_TOKEN`")
                return web.json_response(err.body(), status=err.status)
        if services.metrics is None:
            err = GatewayError("not_found", "metrics are off: add `- metrics: {}` first in the pipeline")
            return web.json_response(err.body(), status=err.status)
        return web.Response(body=render(services.metrics), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/metrics", metrics)
