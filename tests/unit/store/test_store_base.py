"""The store facade: migrations apply once (also with two openers), WAL, ping/close, repositories appear."""
from __future__ import annotations

import asyncio
import sqlite3

import pytest

from gateway.store import Store, open_store
from gateway.store.base import _statements, migrations


async def test_open_applies_migrations_once_and_reopen_is_a_no_op(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    store = await open_store(url)
    assert store.schema_version >= 1
    assert (await store.fetchone("PRAGMA journal_mode"))[0] == "wal"
    assert (await store.fetchone("PRAGMA foreign_keys"))[0] == 1
    tables = {r[0] for r in await store.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"users", "orgs", "teams", "projects", "api_keys", "provider_keys", "usage", "dlp_events", "alerts",
            "alert_events", "webhooks", "webhook_deliveries", "schema_version", "meta"} <= tables
    await store.close()
    again = await open_store(url)
    assert await again.migrate() == []
    rows = await again.fetchall("SELECT version FROM schema_version")
    assert [r[0] for r in rows] == [v for v, _, _ in migrations()]
    await again.ping()
    await again.close()
    with pytest.raises(RuntimeError):
        await again.ping()


async def test_two_processes_opening_together_apply_each_migration_once(tmp_path):
    url = f"sqlite:///{tmp_path}/race.db"
    stores = await asyncio.gather(*(Store(url).open() for _ in range(4)))
    rows = await stores[0].fetchall("SELECT version, COUNT(*) FROM schema_version GROUP BY version")
    assert all(r[1] == 1 for r in rows)
    for s in stores:
        await s.close()


async def test_every_repository_is_an_attribute(tmp_path):
    store = await open_store(f"sqlite:///{tmp_path}/r.db")
    for name in ("projects", "api_keys", "users", "orgs", "teams", "provider_keys", "meta"):
        assert hasattr(store, name), name
    await store.close()


async def test_a_failed_transaction_rolls_back(tmp_path):
    store = await open_store(f"sqlite:///{tmp_path}/tx.db")
    with pytest.raises(sqlite3.IntegrityError):
        async with store.tx() as db:
            await db.execute("INSERT INTO orgs (id, name, created_at) VALUES ('o1', 'x', 0)")
            await db.execute("INSERT INTO orgs (id, name, created_at) VALUES ('o2', 'x', 0)")  # UNIQUE(name)
    assert await store.fetchone("SELECT 1 FROM orgs WHERE id = 'o1'") is None
    await store.close()


async def test_deleting_a_project_removes_its_keys(tmp_path):
    store = await open_store(f"sqlite:///{tmp_path}/c.db")
    org = await store.orgs.ensure()
    p = await store.projects.create(org_id=org["id"], name="p")
    await store.api_keys.create(key_id="abcdefabcdef", project_id=p["id"], prefix="lgw_proj_abcdefabcdef", secret_hash=b"h" * 32)
    await store.provider_keys.put(p["id"], "openai", b"blob", "kid", "")
    assert await store.projects.delete(p["id"], org["id"])
    assert await store.api_keys.lookup("abcdefabcdef") is None
    assert await store.provider_keys.ciphertexts(p["id"]) == {}
    await store.close()


def test_statement_splitter_handles_semicolons_in_strings_and_triggers():
    sql = "CREATE TABLE t (a TEXT DEFAULT ';');\n-- c;\nCREATE TRIGGER tr AFTER INSERT ON t BEGIN\n  UPDATE t SET a = 'x;y';\nEND;\n"
    assert len(list(_statements(sql))) == 2


def test_migration_files_are_numbered_uniquely(tmp_path):
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0001_b.sql").write_text("SELECT 1;")
    with pytest.raises(ValueError, match="twice"):
        migrations(tmp_path)


async def test_new_migration_files_apply_in_order(tmp_path):
    store = await open_store(f"sqlite:///{tmp_path}/m.db")
    extra = tmp_path / "mig"
    extra.mkdir()
    (extra / "0900_extra.sql").write_text("CREATE TABLE extra (x INTEGER);\n")
    assert await store.migrate(extra) == [900]
    assert store.schema_version == 900
    assert await store.migrate(extra) == []
    await store.close()


async def test_none_is_stored_as_null_and_reads_back_as_none(tmp_path):
    """The store registers an identity adapter for None (a fast path): NULL must stay NULL."""
    store = await open_store(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        await store.execute("CREATE TABLE t (a TEXT, b INTEGER)")
        await store.execute("INSERT INTO t VALUES (?, ?), (?, ?)", (None, None, "x", 1))
        assert tuple(await store.fetchone("SELECT COUNT(*) FROM t WHERE a IS NULL AND b IS NULL")) == (1,)
        rows = await store.fetchall("SELECT a, b FROM t ORDER BY rowid")
        assert [tuple(r) for r in rows] == [(None, None), ("x", 1)]
    finally:
        await store.close()
