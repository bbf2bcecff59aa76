"""Build the aiohttp app from a Config; start-up, graceful shutdown, worker processes.

Start-up order (one ``cleanup_ctx``; teardown runs in reverse): HTTP client session →
store → state → pricing → usage writer → providers → tools → middlewares → chain.
SIGTERM: readiness goes false, listeners close, in-flight requests drain for up to
``server.shutdown_timeout``, plugins shut down, usage is flushed, exit 0.
"""
from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import os
import signal
import socket
import time
from typing import Any, AsyncIterator

import aiohttp
from aiohttp import web

from . import netguard
from .config import Config, PluginEntry, load_config
from .pipeline import build_chain
from .plugin import Services
from .pricing import Pricing
from .http.errors import install_error_boundary
from .http.keys import CHAIN, RUNTIME, SERVICES, WRITER
from .http.protocol import FrontLimits, GuardedRunner
from .http.routes import setup_routes
from .http.writer import ReplyWriter
from .logs import flush_logs, log_request

__all__ = ["build_app", "serve", "run"]

log = logging.getLogger("watchllm")


def _optional(module: str, attr: str) -> Any:
    """Parts built by separate work streams; absent ones are skipped."""
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        if exc.name and module.startswith(exc.name):
            return None
        raise
    return getattr(mod, attr, None)


def _make_pricing(config: Config) -> Pricing:
    return Pricing.from_file(config.pricing.file, config.pricing.models)


def instantiate(entry: PluginEntry, services: Services) -> Any:
    """Build one plugin. Middleware instances are findable as ``services.extras["middleware.<name>"]``
    (the admin API reaches the budget and cache layers that way, also after a hot reload)."""
    obj = entry.cls(entry.options, services)
    if entry.kind == "middleware":
        services.extras[f"middleware.{entry.name}"] = obj
    return obj


async def start_plugins(config: Config, services: Services, started: list[Any]) -> list[Any]:
    """Build one generation's providers, tools and middleware layers, and run their ``startup()``.

    Everything that started is appended to ``started`` (so the caller can shut it down, also
    when a later plugin fails). Returns the middleware layers, outermost first.
    """
    for name, entry in config.providers.items():
        services.providers[name] = instantiate(entry, services)
    for name, entry in config.tools.items():
        services.tools[name] = instantiate(entry, services)
    layers = [instantiate(entry, services) for entry in config.pipeline]
    for obj in [*services.providers.values(), *services.tools.values(), *layers]:
        startup = getattr(obj, "startup", None)
        if startup is not None:
            await startup()
        started.append(obj)
    return layers


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    services = app[SERVICES]
    config = services.config
    started: list[Any] = []
    resolver = netguard.resolver_for_config(config)  # SSRF: refuse private answers
    connector = aiohttp.TCPConnector(limit=1000, limit_per_host=0, ttl_dns_cache=300, keepalive_timeout=60, resolver=resolver)
    services.http = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None), auto_decompress=True)
    services.upstream.resolver = resolver  # the lean client (gateway/upstream/h1.py) checks the same way
    try:
        open_store = _optional("gateway.store", "open_store")
        if open_store is not None:
            services.store = await open_store(config.store)
        open_state = _optional("gateway.state", "open_state")
        if open_state is not None:
            services.state = await open_state(config.state)
        writer_cls = _optional("gateway.usage", "UsageWriter")
        if writer_cls is not None and services.store is not None:
            services.usage = writer_cls(services.store)
            await services.usage.start()
        layers = await start_plugins(config, services, started)
        app[CHAIN] = build_chain(layers)
        app[RUNTIME]["layers"] = layers
        app[RUNTIME]["plugins"] = started  # hot reload (gateway/reload.py) replaces this list with the live generation's
        app[RUNTIME]["ready"] = True
        if config.server.gc_freeze:
            _tune_gc()
        log.info("watchllm ready: pipeline=%s models=%s", [e.name for e in config.pipeline], list(config.models))
        yield
    finally:
        app[RUNTIME]["ready"] = False
        finish = _optional("gateway.reload", "finish_retirements")  # hot reload: shut down retired generations
        if finish is not None:
            await finish(app)
        for obj in reversed(app[RUNTIME].get("plugins", started)):
            shutdown = getattr(obj, "shutdown", None)
            if shutdown is not None:
                try:
                    await shutdown()
                except Exception:
                    log.exception("plugin shutdown failed: %s", type(obj).__name__)
        if services.usage is not None:
            await services.usage.close()
        if services.state is not None and hasattr(services.state, "close"):
            await services.state.close()
        if services.store is not None:
            await services.store.close()
        await services.http.close()
        await services.upstream.close()


def _tune_gc() -> None:
    """Start-up objects (modules, config, compiled patterns, the model) live as long as the
    process: freeze them so no collection walks them again, and collect the young generation
    every 20k allocations instead of 700. Reference counting still frees non-cyclic garbage at
    once; only cycles wait a little longer. (Python's docs recommend freeze() for servers.)"""
    gc.collect()
    gc.freeze()
    _, g1, g2 = gc.get_threshold()
    gc.set_threshold(20_000, g1, g2)


def build_app(config: Config, *, services: Services | None = None) -> web.Application:
    logging.getLogger("watchllm").setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())
    if services is None:
        services = Services(config=config, log=log, pricing=_make_pricing(config))
    app = web.Application(client_max_size=config.server.max_body_bytes)
    install_error_boundary(app)
    app[SERVICES] = services
    app[RUNTIME] = {"started": time.monotonic(), "started_wall": time.time(), "ready": False, "draining": False,
                    "in_flight": 0, "shed": 0}

    async def record_usage(call: Any, outcome: Any) -> None:
        try:
            if services.usage is not None:
                await services.usage.record(call, outcome)
        finally:
            log_request(call, outcome, services.config.models)  # one JSON line per request, after its usage row is durable

    app[WRITER] = ReplyWriter(pricing=services.pricing, body_fields=config.server.body_fields, final_hook=record_usage)
    setup_routes(app)
    for module in ("gateway.admin", "gateway.http.metrics", "gateway.http.openapi", "gateway.http.extra_routes", "gateway.http.tools_routes", "gateway.reload"):
        setup = _optional(module, "setup")
        if setup is not None:
            setup(app, services)
    app.cleanup_ctx.append(_lifecycle)
    return app


def _runner(app: web.Application, config: Config) -> web.AppRunner:
    s = config.server
    fast = FrontLimits(max_line=s.max_line_size, max_field=s.max_field_size, max_headers=s.max_headers,
                       max_body=s.max_body_bytes, header_timeout=s.header_read_timeout, keepalive=s.keepalive_timeout,
                       access_log=s.access_log) if s.fast_front else None
    return GuardedRunner(
        app,
        header_timeout=s.header_read_timeout,
        fast=fast,
        handler_cancellation=True,  # a client that disconnects cancels its upstream call
        access_log=logging.getLogger("watchllm.access") if s.access_log else None,
        keepalive_timeout=s.keepalive_timeout,
        shutdown_timeout=s.shutdown_timeout,
        max_line_size=s.max_line_size,
        max_field_size=s.max_field_size,
        max_headers=s.max_headers,
    )


async def serve(config: Config, *, host: str | None = None, port: int | None = None, sock: socket.socket | None = None) -> int:
    """Serve until SIGTERM/SIGINT, then drain and exit. Returns the process exit code."""
    app = build_app(config)
    runner = _runner(app, config)
    await runner.setup()
    if sock is not None:
        site: web.BaseSite = web.SockSite(runner, sock)
    else:
        site = web.TCPSite(
            runner, host or config.server.host, port if port is not None else config.server.port,
            reuse_port=config.server.workers > 1, backlog=1024,
        )
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    on_sighup = _optional("gateway.reload", "on_sighup")  # hot reload: SIGHUP re-reads the YAML
    if on_sighup is not None:
        loop.add_signal_handler(signal.SIGHUP, on_sighup, app)
    names = getattr(site, "name", "")
    log.info("serving on %s (pid %d)", names, os.getpid())
    print(f"watchllm serving on {names} (pid {os.getpid()})", flush=True)
    await stop.wait()
    log.info("shutting down: draining in-flight requests")
    app[RUNTIME]["draining"] = True
    await runner.cleanup()  # closes listeners, waits for handlers (shutdown_timeout), runs cleanup_ctx
    flush_logs()  # buffered request lines (a spawned worker exits without logging.shutdown)
    return 0


def _install_uvloop() -> None:
    try:
        import uvloop

        uvloop.install() if hasattr(uvloop, "install") else asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - uvloop is a dependency; keep serving without it
        log.warning("uvloop not available; using the default asyncio loop")


def _worker(config_path: str, host: str | None, port: int | None) -> None:
    from .logs import configure_logging

    configure_logging()  # a spawned worker starts with no logging set up
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a reload during start-up must not kill it; serve() installs the handler
    _install_uvloop()
    config = load_config(config_path)
    raise SystemExit(asyncio.run(serve(config, host=host, port=port)))


def run(config: Config, *, config_path: str | None = None, host: str | None = None, port: int | None = None) -> int:
    """Entry point of ``watchllm serve``: one process, or N workers sharing the port (SO_REUSEPORT)."""
    workers = config.server.workers
    if workers <= 1 or config_path is None:
        _install_uvloop()
        return asyncio.run(serve(config, host=host, port=port))
    import multiprocessing as mp

    prom_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if prom_dir:  # stale files from a previous run would add old counts to /metrics
        import shutil

        shutil.rmtree(prom_dir, ignore_errors=True)
        os.makedirs(prom_dir, exist_ok=True)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(config_path, host, port), daemon=False) for _ in range(workers)]
    for p in procs:
        p.start()

    def forward(signum: int, _frame: Any) -> None:
        for p in procs:
            if p.pid and p.is_alive():
                os.kill(p.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, forward)  # hot reload reaches every worker
    code = 0
    for p in procs:
        p.join()
        code = code or (p.exitcode or 0)
    return code
