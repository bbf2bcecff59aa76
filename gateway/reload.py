"""Hot reload: re-read the YAML and swap the chain atomically (SIGHUP or ``POST /api/admin/reload``).

A reload builds a complete new generation — config, providers, tools, middleware
layers, chain — next to the running one, sharing only the long-lived services
(HTTP session, store, state, usage writer, pricing, extras). If anything fails
(a ConfigError, a plugin whose constructor or ``startup`` raises) the new
generation is shut down and the old one keeps serving. Otherwise ``app[CHAIN]``
and ``app[SERVICES]`` are replaced in one step on the event loop: requests that
already read the old chain finish on it (the HTTP handler reads ``app[CHAIN]`` once
per request), new ones get the new chain. The old generation's plugins are shut
down after ``server.shutdown_timeout`` (by then its in-flight requests are over) or
at server exit, whichever comes first.

Server settings (host, port, workers, body limits) and store/state URLs are not
reloadable: a change to them is refused, since it needs a restart.
"""
from __future__ import annotations

import asyncio
import logging
import warnings
from dataclasses import replace
from typing import Any

from aiohttp import web

from .config import ConfigError, load_config
from .errors import GatewayError
from .http.keys import CHAIN, RUNTIME, SERVICES
from .pipeline import build_chain
from .plugin import Services
from .server import start_plugins

__all__ = ["reload_app", "setup", "GENERATIONS"]

log = logging.getLogger("watchllm.reload")

# app[RUNTIME] keys (the server's lifecycle reads "plugins" to shut the live generation down)
GENERATIONS = "reload.generations"
PLUGINS = "plugins"


class ReloadError(Exception):
    pass


async def _shutdown(objs: list[Any]) -> None:
    for obj in reversed(objs):
        fn = getattr(obj, "shutdown", None)
        if fn is not None:
            try:
                await fn()
            except Exception:
                log.exception("plugin shutdown failed: %s", type(obj).__name__)


async def reload_app(app: web.Application, path: str | None = None) -> dict[str, Any]:
    """Build and swap in a new generation from ``path`` (default: the file the server started from)."""
    runtime = app[RUNTIME]
    lock: asyncio.Lock = runtime.setdefault("reload.lock", asyncio.Lock())
    async with lock:  # one reload at a time; a SIGHUP storm queues up
        old: Services = app[SERVICES]
        source = path or old.config.source
        try:
            config = await asyncio.get_running_loop().run_in_executor(None, load_config, source)
        except ConfigError as exc:
            raise ReloadError(str(exc)) from None
        for section in ("server", "store", "state"):
            if getattr(config, section) != getattr(old.config, section):
                raise ReloadError(f"{source}: `{section}` changed; it needs a restart, not a reload")
        services = replace(old, config=config, providers={}, tools={})
        started: list[Any] = []
        try:
            layers = await start_plugins(config, services, started)
            chain = build_chain(layers)
        except Exception as exc:
            await _shutdown(started)
            raise ReloadError(f"{source}: plugin start-up failed: {type(exc).__name__}: {exc}") from None
        retired = list(runtime.get(PLUGINS) or [])
        with warnings.catch_warnings():  # aiohttp warns on changing a started app's state; this swap is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            app[SERVICES] = services
            app[CHAIN] = chain
        runtime[PLUGINS] = started
        runtime["layers"] = layers
        runtime["generation"] = runtime.get("generation", 0) + 1
        grace = float(config.server.shutdown_timeout)
        task = asyncio.get_running_loop().create_task(_retire(retired, grace))
        runtime.setdefault(GENERATIONS, set()).add(task)
        task.add_done_callback(runtime[GENERATIONS].discard)
        log.info("config reloaded from %s (generation %d)", source, runtime["generation"])
        return {"reloaded": True, "generation": runtime["generation"], "source": source,
                "pipeline": [e.name for e in config.pipeline], "models": list(config.models), "tools": list(config.tools)}


async def _retire(objs: list[Any], grace: float) -> None:
    try:
        await asyncio.sleep(grace)
    finally:  # cancelled at server exit: shut down now
        await asyncio.shield(_shutdown(objs))


async def finish_retirements(app: web.Application) -> None:
    """At server exit: shut down every retired generation still waiting for its grace period."""
    tasks = list(app[RUNTIME].get(GENERATIONS) or ())
    for t in tasks:
        t.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)


def on_sighup(app: web.Application) -> None:
    async def run() -> None:
        try:
            await reload_app(app)
        except ReloadError as exc:
            log.error("reload refused, the running config stays: %s", exc)

    task = asyncio.get_running_loop().create_task(run())
    app[RUNTIME].setdefault("reload.tasks", set()).add(task)
    task.add_done_callback(app[RUNTIME]["reload.tasks"].discard)


async def _reload_route(request: web.Request) -> web.Response:
    from .http.routes import error_response

    admin_key = _admin_key()
    if admin_key is None or admin_key not in request.app:
        return error_response(GatewayError("forbidden", "reload needs the admin API (server.admin_enabled)"))
    ctx = request.app[admin_key]
    try:
        await ctx.ready()
        me = await ctx.authenticate(request)
        if me.role != "admin":
            raise GatewayError("forbidden", "reload needs the admin role")
    except GatewayError as err:
        return error_response(err)
    try:
        result = await reload_app(request.app)
    except ReloadError as exc:
        return error_response(GatewayError("invalid_request", "reload refused; the running config stays", details={"problems": str(exc)}))
    return web.json_response(result)


def _admin_key() -> Any:
    try:
        from .admin.context import ADMIN
    except ImportError:
        return None
    return ADMIN


def _describe() -> None:
    try:
        from .http.openapi import op, register_paths
    except ImportError:  # pragma: no cover - the OpenAPI document is optional
        return
    register_paths({"/api/admin/reload": {"post": op("Re-read the YAML and swap the chain (admin role)", "admin",
                                                     errors=("400", "401", "403"))}})


_describe()


def setup(app: web.Application, services: Services) -> None:
    app.router.add_post("/api/admin/reload", _reload_route)
