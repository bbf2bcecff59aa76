"""Crash consistency (issue 11, RELIABILITY.md D1): ten kill -9 at random points under load on ONE
database file, the gateway restarted after each: no acknowledged usage row is lost, the file passes
``PRAGMA integrity_check`` after every crash, and no request id appears twice."""
from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3

import pytest

from tests.fixtures.gateway import base_config
from tests.integration.test_usage_durability import _load, _replay

pytestmark = pytest.mark.slow


def test_ten_random_kill_points_on_one_database(gateway_factory, tmp_path):
    rng = random.Random(20261123)
    points = sorted(rng.randint(20, 900) for _ in range(10))
    cfg = base_config(tmp_path)
    db_path = tmp_path / "watchllm.db"
    acked_all: set[str] = set()
    for trial, kill_after in enumerate(points):
        gw = gateway_factory(cfg, name=f"crash{trial}")
        pid = gw.proc.pid
        acked, _ = asyncio.run(_load(gw.url, stop_after=kill_after, act=lambda: os.kill(pid, signal.SIGKILL)))
        gw.proc.wait(10)
        assert gw.proc.returncode == -signal.SIGKILL
        acked_all |= acked
        asyncio.run(_replay(db_path))  # what the next start does first: the usage journal, then the WAL
        with sqlite3.connect(db_path) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            total, distinct = db.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM usage").fetchone()
            ids = {r[0] for r in db.execute("SELECT id FROM usage")}
        lost = acked_all - ids
        assert not lost, f"kill {trial} after {kill_after}: {len(lost)} acknowledged rows lost"
        assert total == distinct
    print(f"\ncrash consistency: 10 kills at {points}; {len(acked_all)} acknowledged, 0 lost, {total} rows, integrity ok")
