"""Admin API under /api/ behind JWT login. ``setup(app, services)`` mounts it; the server calls it.

Routes: ``auth_routes`` (login/refresh/logout/me), ``project_routes`` (projects, API keys,
provider keys), ``team_routes`` (org users, teams), ``usage`` (usage, CSV export, requests,
external ingest), ``analytics`` (dashboard, overview, models, metric queries) and, where
present, ``alerts``. Settings come from environment
variables (``gateway/admin/settings.py``); the whole API is described in
``gateway/http/openapi.py``. Handlers read ``services.store`` lazily: it is opened by the
server's lifecycle after ``setup`` runs.
"""
from __future__ import annotations

import importlib
import logging
from typing import Any

from aiohttp import web

from . import analytics, auth_routes, project_routes, runtime_routes, team_routes, usage
from .context import ADMIN, AdminContext
from .settings import AdminSettings

__all__ = ["setup", "ADMIN", "AdminContext", "AdminSettings"]

log = logging.getLogger("watchllm.admin")


def setup(app: web.Application, services: Any, settings: AdminSettings | None = None) -> None:
    """Mount the admin routes on ``app`` (skipped when ``server.admin_enabled`` is false)."""
    server = getattr(getattr(services, "config", None), "server", None)
    if server is not None and not getattr(server, "admin_enabled", True):
        return
    ctx = AdminContext(services, settings)
    app[ADMIN] = ctx
    auth_routes.add_routes(app)
    project_routes.add_routes(app)
    team_routes.add_routes(app)
    usage.add_routes(app)
    analytics.add_routes(app)
    runtime_routes.add_routes(app)
    try:
        alerts = importlib.import_module(f"{__name__}.alerts")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.alerts":
            raise
    else:
        alerts.add_routes(app)

    async def on_startup(_: web.Application) -> None:
        # The server opens the store in a cleanup_ctx, which runs before on_startup handlers.
        if services.store is not None:
            await ctx.ready()

    app.on_startup.append(on_startup)
