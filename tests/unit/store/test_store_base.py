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


async def test_write_many_commits_together_or_not_at_all(tmp_path):
    store = await open_store(f"sqlite:///{tmp_path}/wm.db")
    ins = "INSERT INTO orgs (id, name, created_at) VALUES (?, ?, 0)"
    await store.write_many([(ins, ("o1", "a")), (ins, ("o2", "b"))])
    with pytest.raises(sqlite3.IntegrityError):
        await store.write_many([(ins, ("o3", "c")), (ins, ("o4", "a"))])  # UNIQUE(name): o3 must not stay
    rows = await store.fetchall("SELECT id FROM orgs ORDER BY id")
    assert [r[0] for r in rows] == ["o1", "o2"]
    await store.write_many([(ins, ("o5", "e"))])  # the connection is usable after the rollback
    await store.close()


async def test_a_big_usage_batch_is_one_hop_to_the_database_thread(tmp_path, monkeypatch):
    """Under a saturated loop every hop waits for the loop to come round: 1,000 rows in 32-row statements
    used to be 34 hops (~2,900 rows/s at the full chain's maximum, a backlog growing by 2,300 rows/s)."""
    from gateway.store.usage import COLUMNS

    store = await open_store(f"sqlite:///{tmp_path}/hops.db")
    hops = 0
    real = store.db._execute

    async def counting(fn, *args, **kwargs):
        nonlocal hops
        hops += 1
        return await real(fn, *args, **kwargs)

    monkeypatch.setattr(store.db, "_execute", counting)
    values = {c: None for c in COLUMNS}
    values.update(project_id="p1", endpoint="chat.completions", model_requested="m", model_served="m", provider="mock", attempts=1,
                  prompt_tokens=1, completion_tokens=1, cost_micros=0, tokens_saved=0, cost_saved_micros=0,
                  latency_ms=1.0, status=200, ended="complete", source="proxy", created_at=1.0)
    rows = [tuple({**values, "id": f"r{i}"}[c] for c in COLUMNS) for i in range(1000)]
    await store.usage.insert_many(rows)
    assert hops == 1
    monkeypatch.undo()
    row = await store.fetchone("SELECT COUNT(*) FROM usage")
    assert row[0] == 1000
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
