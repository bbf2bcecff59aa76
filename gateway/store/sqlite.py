"""Minimal SQLite store (placeholder until the tenancy work lands): connection, WAL, ping."""
from __future__ import annotations

import os
from pathlib import Path

import aiosqlite


def sqlite_path(url: str) -> str:
    if url.startswith("sqlite:///"):
        return url[len("sqlite:///"):]
    if url.startswith("sqlite://"):
        return url[len("sqlite://"):]
    return url


class SQLiteStore:
    def __init__(self, url: str) -> None:
        self.path = sqlite_path(url)
        self.db: aiosqlite.Connection | None = None

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.db = await aiosqlite.connect(self.path)
        await self.db.execute("PRAGMA journal_mode=WAL")
        await self.db.execute("PRAGMA synchronous=NORMAL")

    async def ping(self) -> None:
        if self.db is None:
            raise RuntimeError("store is closed")
        if self.path != ":memory:" and not os.path.exists(self.path):
            raise RuntimeError("database file is missing")
        await self.db.execute("SELECT 1")

    async def close(self) -> None:
        if self.db is not None:
            await self.db.close()
            self.db = None
