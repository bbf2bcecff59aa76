"""`server.workers: 2` runs two processes on one port (SO_REUSEPORT); SIGTERM stops both, exit 0."""
from __future__ import annotations

import os
import signal
import sqlite3
import time

import openai
import orjson
import psutil

from tests.fixtures.gateway import base_config


def _listening_workers(gw, *, expected: int, timeout: float = 30.0) -> list:
    """The worker processes listening on the gateway's port (/ready answers as soon as one of them is up)."""
    deadline = time.monotonic() + timeout
    while True:
        listening = {c.pid for c in psutil.net_connections("tcp") if c.laddr and c.laddr.port == gw.port and c.status == "LISTEN"}
        children = [ch for ch in psutil.Process(gw.proc.pid).children() if ch.pid in listening]
        if len(children) >= expected or time.monotonic() > deadline:
            return children
        time.sleep(0.1)


def test_two_workers_share_the_port_and_stop_cleanly(gateway_factory, tmp_path):
    gw = gateway_factory(base_config(tmp_path, server={"workers": 2, "shutdown_timeout": 5}))
    c = openai.OpenAI(base_url=gw.base_url, api_key="k", max_retries=0)
    for _ in range(20):
        assert c.chat.completions.create(model="mock", messages=[{"role": "user", "content": "w"}]).choices
    children = _listening_workers(gw, expected=2)
    assert len(children) == 2  # two workers listen on the same port
    # each worker has its own usage committer process (a child of the worker)
    committers = [p for ch in children for p in ch.children() if "gateway.usage_committer" in " ".join(p.cmdline())]
    assert len(committers) == 2 and {p.ppid() for p in committers} == {ch.pid for ch in children}
    # SIGHUP to the parent reloads every worker (each logs its reload)
    gw.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and gw.log().count("config reloaded") < 2:
        time.sleep(0.1)
    assert gw.log().count("config reloaded") >= 2, gw.log()[-2000:]
    assert c.chat.completions.create(model="mock", messages=[{"role": "user", "content": "after"}]).choices
    assert gw.stop(timeout=20) == 0
    assert not any(psutil.pid_exists(ch.pid) and psutil.Process(ch.pid).status() != psutil.STATUS_ZOMBIE
                   for ch in children + committers)
    assert os.path.exists(gw.log_path)
    # every answered request has its row, committed by one of the two committers; nothing left to replay
    db = sqlite3.connect(tmp_path / "watchllm.db")
    try:
        assert db.execute("SELECT COUNT(*) FROM usage WHERE status = 200").fetchone()[0] == 21
        row_ids = {r[0] for r in db.execute("SELECT id FROM usage")}
    finally:
        db.close()
    assert not list((tmp_path / "watchllm.db.usage-journal").glob("seg-*.jsonl"))
    # both workers' buffered request lines reached the shared log whole, none lost at shutdown
    lines = [orjson.loads(x) for x in gw.log().splitlines() if '"logger":"watchllm.request"' in x]
    assert len(lines) == 21 and {x["request_id"] for x in lines} == row_ids


def test_metrics_add_up_across_two_workers(gateway_factory, tmp_path):
    prom_dir = tmp_path / "prom"
    gw = gateway_factory(base_config(tmp_path, server={"workers": 2, "shutdown_timeout": 5}, pipeline=["metrics", "router"]),
                         env={"PROMETHEUS_MULTIPROC_DIR": str(prom_dir)})
    assert len(_listening_workers(gw, expected=2)) == 2
    for i in range(40):  # fresh connections spread over both workers (SO_REUSEPORT hashes by source port)
        fresh = openai.OpenAI(base_url=gw.base_url, api_key="k", max_retries=0)
        raw = fresh.chat.completions.with_raw_response.create(model="mock", messages=[{"role": "user", "content": f"m{i}"}])
        assert raw.parse().choices
        fresh.close()
    import urllib.request

    totals = []
    for _ in range(4):  # whichever worker answers the scrape reports the whole server
        with urllib.request.urlopen(f"{gw.url}/metrics", timeout=5) as r:
            text = r.read().decode()
        total = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                    if line.startswith("watchllm_requests_total{") and 'status="200"' in line)
        totals.append(total)
    assert totals == [40.0] * 4, totals
    assert len(list(prom_dir.glob("*.db"))) >= 2  # both workers wrote their share
    assert "_probe" not in text  # no stray series in the shared files
