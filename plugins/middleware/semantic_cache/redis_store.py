"""Entries shared by every replica through Redis; each replica keeps a local FAISS mirror.

Layout under ``prefix`` (default ``watchllm:cache``):

* ``{prefix}:e:{id}``          the entry (orjson, vector as base64 float32), expiring with the entry;
* ``{prefix}:p:{project}``     ZSET of the project's entry ids scored by expiry time
  (bounds the project: ``ZPOPMIN`` evicts the oldest, atomically, whichever replica does it);
* ``{prefix}:projects``        SET of projects that have entries;
* ``{prefix}:log``             STREAM of changes (``add`` with the entry, ``del`` with ids,
  ``flush``), trimmed to about ``log_max`` records.

A replica applies its own writes locally at once and every other replica's by
reading the stream (``XREAD BLOCK``). A fresh replica notes the stream's last id,
loads the live entries of every project, then reads the stream from that id, so
nothing written meanwhile is lost (re-applying an add is idempotent by id).

Lookups never touch Redis (they use the local mirror): an exact hit stays in
microseconds. Redis failures never fail a request: a failed write is logged and
the entry stays local; the reader reconnects with back-off.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

from .entry import Entry
from .index import CacheIndex

__all__ = ["RedisStore"]

log = logging.getLogger("watchllm.semantic_cache")


class RedisStore:
    def __init__(self, index: CacheIndex, url: str, *, prefix: str = "watchllm:cache", max_connections: int = 16,
                 timeout: float = 2.0, log_max: int = 20000) -> None:
        import redis.asyncio as aioredis

        self.index = index
        self.prefix = prefix
        self.replica = secrets.token_hex(6)
        self.log_max = log_max
        pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=timeout)
        self.redis = aioredis.Redis(connection_pool=pool)
        # XREAD BLOCK holds its connection: give the reader its own so writers never queue behind it.
        self._reader_redis = aioredis.Redis.from_url(url)
        self._last_id = "0-0"
        self._reader: asyncio.Task[None] | None = None
        self.applied = 0  # remote changes applied (tests and stats)

    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        try:
            last = await self.redis.xrevrange(self._k("log"), count=1)
            self._last_id = last[0][0].decode() if last else "0-0"
            await self._load_all()
        except Exception as exc:  # Redis down at start-up: serve from the local cache, catch up when it returns
            log.warning("semantic cache: could not load entries from redis (%s: %s); starting empty", type(exc).__name__, exc)
        self._reader = asyncio.ensure_future(self._read_log())

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except (asyncio.CancelledError, Exception):
                pass
        await self._reader_redis.aclose()
        await self.redis.aclose()

    async def _load_all(self) -> None:
        now = time.time()
        projects = [p.decode() for p in await self.redis.smembers(self._k("projects"))]
        for project in projects:
            zkey = self._k("p", project)
            await self.redis.zremrangebyscore(zkey, "-inf", now)
            ids = [i.decode() for i in await self.redis.zrange(zkey, 0, -1)]
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                raws = await self.redis.mget([self._k("e", i) for i in chunk])
                for raw in raws:
                    if raw is not None:
                        entry = Entry.loads(raw)
                        if entry.expires > now:
                            self.index.add(entry, now)

    # reads (local) ---------------------------------------------------------------
    def get_exact(self, project: str, exact_key: str) -> Entry | None:
        return self.index.get_exact(project, exact_key)

    def search(self, project: str, scope: str, vector: Any, k: int) -> list[tuple[float, Entry]]:
        return self.index.search(project, scope, vector, k)

    # writes ----------------------------------------------------------------------
    async def put(self, entry: Entry) -> None:
        evicted_local = self.index.add(entry)
        raw = entry.dumps()
        ttl_ms = max(1, int((entry.expires - time.time()) * 1000))
        zkey = self._k("p", entry.project)
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.set(self._k("e", str(entry.id)), raw, px=ttl_ms)
            pipe.zadd(zkey, {str(entry.id): entry.expires})
            pipe.sadd(self._k("projects"), entry.project)
            pipe.xadd(self._k("log"), {"op": "add", "origin": self.replica, "project": entry.project, "data": raw},
                      maxlen=self.log_max, approximate=True)
            pipe.zremrangebyscore(zkey, "-inf", time.time())
            pipe.zcard(zkey)
            results = await pipe.execute()
            size = int(results[-1])
            over = size - self.index.max_entries
            if over > 0:
                batch = over + min(self.index.eviction_batch, self.index.max_entries // 10)
                popped = await self.redis.zpopmin(zkey, batch)
                await self._delete(entry.project, [int(m) for m, _ in popped])
            if evicted_local:
                await self._delete(entry.project, evicted_local)
        except Exception as exc:  # a shared-cache write must never fail the request that produced it
            log.warning("semantic cache: redis write failed: %s: %s", type(exc).__name__, exc)

    async def _delete(self, project: str, ids: list[int]) -> None:
        if not ids:
            return
        self.index.remove(project, ids)
        pipe = self.redis.pipeline(transaction=False)
        pipe.delete(*[self._k("e", str(i)) for i in ids])
        pipe.zrem(self._k("p", project), *[str(i) for i in ids])
        pipe.xadd(self._k("log"), {"op": "del", "origin": self.replica, "project": project, "data": ",".join(map(str, ids))},
                  maxlen=self.log_max, approximate=True)
        await pipe.execute()

    async def flush(self, project: str) -> int:
        """Drop a project everywhere. Unlike writes this raises on a Redis error: the admin must know."""
        count = self.index.flush(project)
        zkey = self._k("p", project)
        ids = [i.decode() for i in await self.redis.zrange(zkey, 0, -1)]
        pipe = self.redis.pipeline(transaction=False)
        for start in range(0, len(ids), 500):
            pipe.delete(*[self._k("e", i) for i in ids[start : start + 500]])
        pipe.delete(zkey)
        pipe.srem(self._k("projects"), project)
        pipe.xadd(self._k("log"), {"op": "flush", "origin": self.replica, "project": project, "data": ""},
                  maxlen=self.log_max, approximate=True)
        await pipe.execute()
        return max(count, len(ids))

    # the change log --------------------------------------------------------------
    async def _read_log(self) -> None:
        backoff = 0.1
        while True:
            try:
                resp = await self._reader_redis.xread({self._k("log"): self._last_id}, count=500, block=1000)
                backoff = 0.1
                for _stream, records in resp or ():
                    for rid, fields in records:
                        self._last_id = rid.decode()
                        self._apply(fields)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("semantic cache: redis log read failed (%s); retrying in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _apply(self, fields: dict[bytes, bytes]) -> None:
        if fields.get(b"origin", b"").decode() == self.replica:
            return
        op = fields.get(b"op", b"").decode()
        project = fields.get(b"project", b"").decode()
        data = fields.get(b"data", b"")
        if op == "add":
            entry = Entry.loads(data)
            if entry.expires > time.time():
                self.index.add(entry)
        elif op == "del":
            self.index.remove(project, [int(i) for i in data.decode().split(",") if i])
        elif op == "flush":
            self.index.flush(project)
        self.applied += 1
