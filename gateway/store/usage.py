"""Usage rows: one per request, written in batches by ``gateway.usage.UsageWriter``.

Writes are ``INSERT OR IGNORE`` keyed on the request id, so a batch retried after an
unknown commit outcome never duplicates a row. Reads are scoped: by project for the
project views, by organization (``project_id IN (SELECT id FROM projects WHERE org_id=?)``)
for the dashboard. Money stays integer micro-USD here; USD strings are made at the edge.

``iter_rows`` streams a range on a second, read-only connection (WAL readers do not
block the writer), so a 100k-row export neither builds a list nor queues the group
commits behind it on the main connection's thread.
"""
from __future__ import annotations

from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Sequence

import aiosqlite

from .base import Repository, repository

__all__ = ["UsageRepo", "COLUMNS", "COLUMN_DEFAULTS", "insert_statements"]

COLUMNS: tuple[str, ...] = (
    "id", "project_id", "key_id", "endpoint", "model_requested", "model_served", "provider", "attempts",
    "prompt_tokens", "completion_tokens", "cost_micros", "cached", "tokens_saved", "cost_saved_micros",
    "latency_ms", "upstream_ms", "ttft_ms", "status", "ended", "error_code", "dlp_findings", "source",
    "request_text", "response_text", "created_at",
)
# Values of the NOT NULL columns when a row comes without them (a usage journal written by an older
# version): INSERT OR IGNORE would silently drop a row with an explicit NULL there.
COLUMN_DEFAULTS: dict[str, Any] = {"attempts": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_micros": 0,
                                   "tokens_saved": 0, "cost_saved_micros": 0, "source": "proxy"}
_INSERT = f"INSERT OR IGNORE INTO usage ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
_ROW = f"({', '.join('?' * len(COLUMNS))})"
# Multi-row INSERTs of at most ROWS_PER_STATEMENT rows: a batch that fits is one statement, in
# autocommit mode its own atomic, durable transaction (one trip to the database thread instead of
# three: BEGIN, INSERT, COMMIT; ~5 us/row against ~6.5 with executemany). The cap matters: the
# sqlite3 module caches a compiled statement per distinct SQL text, and batches of every size up
# to 1000 rows kept ~80 MB of compiled statements alive (measured); capped, at most 32 small ones.
ROWS_PER_STATEMENT = 32
_INSERT_SQL = [""] + [_INSERT if n == 1 else f"{_INSERT[: _INSERT.rindex('(')]}{', '.join([_ROW] * n)}"
                      for n in range(1, ROWS_PER_STATEMENT + 1)]
ORG_PROJECTS = "SELECT id FROM projects WHERE org_id = ?"
_SPEND_SCOPES = {"project": "project_id = ?", "key": "key_id = ?",
                 "team": "project_id IN (SELECT id FROM projects WHERE team_id = ?)"}


class Filter:
    """A WHERE clause built from optional filters; every value is a bound parameter."""

    def __init__(self) -> None:
        self.clauses: list[str] = []
        self.params: list[Any] = []

    def add(self, clause: str, *params: Any) -> "Filter":
        self.clauses.append(clause)
        self.params.extend(params)
        return self

    def scope(self, *, project_id: str | None = None, org_id: str | None = None) -> "Filter":
        if project_id is not None:
            self.add("project_id = ?", project_id)
        if org_id is not None:
            self.add(f"project_id IN ({ORG_PROJECTS})", org_id)
        if project_id is None and org_id is None:
            raise ValueError("usage queries must be scoped by project or organization")
        return self

    def window(self, since: float | None, until: float | None) -> "Filter":
        if since is not None:
            self.add("created_at >= ?", since)
        if until is not None:
            self.add("created_at < ?", until)
        return self

    @property
    def sql(self) -> str:
        return " AND ".join(self.clauses) if self.clauses else "1"


def usage_filter(
    *, project_id: str | None = None, org_id: str | None = None, since: float | None = None, until: float | None = None,
    model: str | None = None, status: str | None = None, provider: str | None = None, cached: bool | None = None,
) -> Filter:
    f = Filter().scope(project_id=project_id, org_id=org_id).window(since, until)
    if model:
        f.add("(model_requested = ? OR model_served = ?)", model, model)
    if provider:
        f.add("provider = ?", provider)
    if status == "success":
        f.add("status < 400")
    elif status == "error":
        f.add("status >= 400")
    elif status and status.isdigit():
        f.add("status = ?", int(status))
    if cached is True:
        f.add("cached IS NOT NULL")
    elif cached is False:
        f.add("cached IS NULL")
    return f


def insert_statements(rows: Sequence[Sequence[Any]]) -> list[tuple[str, list[Any]]]:
    """The INSERT statements that write ``rows`` (tuples in ``COLUMNS`` order), at most
    ``ROWS_PER_STATEMENT`` rows each; run them in one transaction. Also used by the usage committer
    process (``gateway/usage_committer.py``), which has its own connection."""
    statements = []
    for i in range(0, len(rows), ROWS_PER_STATEMENT):
        chunk = rows[i:i + ROWS_PER_STATEMENT]
        statements.append((_INSERT_SQL[len(chunk)], [v for row in chunk for v in row]))
    return statements


@repository("usage")
class UsageRepo(Repository):
    # Set by the usage writer (gateway/usage.py) while it runs: waits (bounded) until every row a
    # client was already answered for is committed, so reads see them (journal mode acknowledges
    # before the commit).
    settle: Callable[[], Awaitable[Any]] | None = None

    async def _settled(self) -> None:
        if self.settle is not None:
            await self.settle()

    async def insert_many(self, rows: Sequence[Sequence[Any]]) -> None:
        """Commit ``rows`` (tuples in ``COLUMNS`` order) in one transaction."""
        if not rows:
            return
        statements = insert_statements(rows)
        if len(statements) == 1:
            await self.store.execute_blind(*statements[0])
            return
        await self.store.write_many(statements)

    async def spend_between(self, scope: str, ident: str, start: float, end: float) -> int:
        """Sum of ``cost_micros`` for one budget scope (project | key | team) in [start, end)."""
        await self._settled()
        where = _SPEND_SCOPES[scope]
        row = await self.store.fetchone(
            f"SELECT COALESCE(SUM(cost_micros), 0) FROM usage WHERE {where} AND created_at >= ? AND created_at < ?",  # nosec B608 - fixed fragment
            (ident, start, end),
        )
        return int(row[0]) if row else 0

    async def purge_before(self, cutoff: float, *, batch: int = 5000) -> int:
        """Delete rows older than ``cutoff`` in small transactions (short write locks)."""
        total = 0
        while True:
            n = await self.store.execute(
                "DELETE FROM usage WHERE rowid IN (SELECT rowid FROM usage WHERE created_at < ? LIMIT ?)", (cutoff, batch)
            )
            total += max(n, 0)
            if n < batch:
                return total

    async def get(self, request_id: str, *, org_id: str) -> dict[str, Any] | None:
        await self._settled()
        row = await self.store.fetchone(f"SELECT * FROM usage WHERE id = ? AND project_id IN ({ORG_PROJECTS})", (request_id, org_id))
        return dict(row) if row else None

    async def list(self, f: Filter, *, limit: int, offset: int = 0) -> list[dict[str, Any]]:
        await self._settled()
        rows = await self.store.fetchall(
            f"SELECT * FROM usage WHERE {f.sql} ORDER BY created_at DESC, id LIMIT ? OFFSET ?", (*f.params, limit, offset)
        )
        return [dict(r) for r in rows]

    async def count(self, f: Filter) -> int:
        await self._settled()
        row = await self.store.fetchone(f"SELECT COUNT(*) FROM usage WHERE {f.sql}", f.params)
        return int(row[0]) if row else 0

    async def summary(self, f: Filter) -> dict[str, Any]:
        await self._settled()
        row = await self.store.fetchone(
            "SELECT COUNT(*) AS requests, COALESCE(SUM(prompt_tokens), 0) AS prompt_tokens, "
            "COALESCE(SUM(completion_tokens), 0) AS completion_tokens, COALESCE(SUM(cost_micros), 0) AS cost_micros, "
            "COALESCE(SUM(cost_saved_micros), 0) AS cost_saved_micros, COALESCE(SUM(tokens_saved), 0) AS tokens_saved, "
            "COALESCE(SUM(cached IS NOT NULL), 0) AS cache_hits, COALESCE(SUM(status >= 400), 0) AS errors, "
            f"AVG(latency_ms) AS avg_latency_ms FROM usage WHERE {f.sql}", f.params,
        )
        return dict(row) if row else {}

    async def by_model(self, f: Filter, *, limit: int = 20) -> list[dict[str, Any]]:
        await self._settled()
        rows = await self.store.fetchall(
            "SELECT COALESCE(model_requested, '') AS model, COUNT(*) AS requests, SUM(prompt_tokens) AS prompt_tokens, "
            "SUM(completion_tokens) AS completion_tokens, SUM(cost_micros) AS cost_micros, "
            "SUM(cached IS NOT NULL) AS cache_hits, SUM(status >= 400) AS errors, AVG(latency_ms) AS avg_latency_ms "
            f"FROM usage WHERE {f.sql} GROUP BY model ORDER BY requests DESC LIMIT ?", (*f.params, limit),
        )
        return [dict(r) for r in rows]

    async def series(self, f: Filter, *, interval_s: int, group_by: str | None = None) -> list[dict[str, Any]]:
        """Buckets of ``interval_s`` seconds (aligned to the epoch, UTC), optionally per model/provider/project."""
        await self._settled()
        group_sql = {"model": "model_requested", "provider": "provider", "project": "project_id", "status": "status"}.get(group_by or "")
        key = f", {group_sql} AS grp" if group_sql else ", NULL AS grp"
        rows = await self.store.fetchall(
            f"SELECT CAST(created_at / ? AS INTEGER) * ? AS bucket{key}, COUNT(*) AS requests, "
            "SUM(prompt_tokens) AS prompt_tokens, SUM(completion_tokens) AS completion_tokens, "
            "SUM(cost_micros) AS cost_micros, SUM(cost_saved_micros) AS cost_saved_micros, "
            "SUM(cached IS NOT NULL) AS cache_hits, SUM(status >= 400) AS errors, AVG(latency_ms) AS avg_latency_ms "
            f"FROM usage WHERE {f.sql} GROUP BY bucket, grp ORDER BY bucket",
            (interval_s, interval_s, *f.params),
        )
        return [dict(r) for r in rows]

    async def latencies(self, f: Filter, *, limit: int = 100_000) -> list[float]:
        """Latencies of a window, sorted, for percentiles (bounded by ``limit``, most recent first)."""
        await self._settled()
        rows = await self.store.fetchall(
            f"SELECT latency_ms FROM usage WHERE {f.sql} AND latency_ms IS NOT NULL ORDER BY created_at DESC LIMIT ?",
            (*f.params, limit),
        )
        return sorted(float(r[0]) for r in rows)

    async def iter_rows(self, f: Filter, columns: Iterable[str] = COLUMNS, *, batch: int = 2000) -> AsyncIterator[tuple[Any, ...]]:
        """Yield rows oldest first, ``batch`` at a time, from a separate read-only connection."""
        await self._settled()
        cols = [c for c in columns if c in COLUMNS]
        sql = f"SELECT {', '.join(cols)} FROM usage WHERE {f.sql} ORDER BY created_at, id"
        if self.store.path == ":memory:":  # one connection only: read through it
            async with self.store.db.execute(sql, f.params) as cur:
                while rows := await cur.fetchmany(batch):
                    for r in rows:
                        yield tuple(r)
            return
        db = await aiosqlite.connect(f"file:{self.store.path}?mode=ro", uri=True)
        try:
            await db.execute(f"PRAGMA busy_timeout={int(self.store.busy_timeout_ms)}")
            async with db.execute(sql, f.params) as cur:
                cur.arraysize = batch
                while rows := await cur.fetchmany(batch):
                    for r in rows:
                        yield tuple(r)
        finally:
            await db.close()

    async def insert_external(self, row: Sequence[Any]) -> bool:
        """One row recorded outside the proxy (``POST /api/integrations/run``); False when the id exists."""
        return await self.store.execute(_INSERT, row) > 0
