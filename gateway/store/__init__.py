"""The store: one async interface for everything durable (tenants, keys, usage, alerts).

Nothing outside ``gateway/store/`` writes SQL. ``open_store`` is what the server calls.
This is the seam the tenancy work fills in; the contract the server relies on:

    store = await open_store(config.store)   # connects, applies migrations
    await store.ping()                        # raises when unreachable (health check)
    await store.close()
"""
from __future__ import annotations

from typing import Any

__all__ = ["open_store"]


async def open_store(cfg: Any) -> Any:
    from .sqlite import SQLiteStore

    store = SQLiteStore(cfg.url)
    await store.open()
    return store
