"""The store: one async interface for everything durable (tenants, keys, usage, alerts).

Nothing outside ``gateway/store/`` writes SQL. The contract the server relies on:

    store = await open_store(config.store)   # connects, applies migrations
    await store.ping()                        # raises when unreachable (health check)
    await store.close()

Repositories are attributes: ``store.projects``, ``store.api_keys``, ``store.users``,
``store.orgs``, ``store.teams``, ``store.provider_keys``, ``store.meta``. How to add one:
``gateway/store/base.py`` docstring and ``gateway/store/README.md``.
"""
from __future__ import annotations

from typing import Any

from .base import Repository, Store, new_id, repository

__all__ = ["open_store", "Store", "Repository", "repository", "new_id"]


async def open_store(cfg: Any) -> Store:
    """Open the store named by ``cfg.url`` (``sqlite:///path``; ``sqlite:///:memory:`` for tests)."""
    url = getattr(cfg, "url", cfg)
    if not str(url).startswith("sqlite:") and "://" in str(url):
        raise ValueError(f"store.url: only sqlite:/// URLs are supported, got scheme {str(url).split('://')[0]!r}")
    return await Store(str(url)).open()
