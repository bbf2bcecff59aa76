"""Instructions per request, counted by valgrind's callgrind: a cost figure that does not move with the machine.

    python -m benchmarks.instructions full exact_cache router passthrough
    python -m benchmarks.instructions full --drop dlp          # the full chain without one middleware

On a shared box, wall-clock CPU per request drifts by ±20% over tens of seconds, so an A/B of a 3%
change needs dozens of interleaved rounds. Counting instructions is repeatable to ~0.1% run to run
(the same build, inputs and environment), at the price of running the server ~50× slower. Each
scenario starts the server under ``valgrind --tool=callgrind --instr-atstart=no`` on core 1, warms it
up for 5 s uncounted, switches counting on with ``callgrind_control -i on`` for a fixed ``wrk`` window
(8 connections, core 0), then divides the instructions of the server process (all its threads: the
SQLite thread too) by the requests served.

What it does not count: time in the kernel (socket and file syscalls) and cache misses, so it ranks
user-space changes; confirm one that changes scheduling (which loop turn does what) with the
interleaved rounds of ``make bench``. Needs ``valgrind`` and ``wrk`` (Debian packages).
"""
from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from .gateway_setup import _post, load_pipelines, pipeline_entries, seed_key, write_config
from .loadgen import chat_body, run_wrk
from .procs import GATEWAY_ENV, PYTHON, ROOT, Proc, free_port
from .scenarios import PRIME_BODY

__all__ = ["count", "main"]

UNIQUE = chat_body(prompt="Request {n}: summarise the benefits of connection pooling in two sentences.")


def _total_ir(out_dir: Path, pids: list[int]) -> int:
    """Per process, the largest ``totals:`` line of its callgrind dumps (the dump taken after the window),
    summed over ``pids``: the server and its usage committer child (``--trace-children=yes``)."""
    total = 0
    for pid in pids:
        best = 0
        for path in glob.glob(str(out_dir / f"cg.{pid}")) + glob.glob(str(out_dir / f"cg.{pid}.*")):
            with open(path, errors="replace") as fh:
                for line in fh:
                    if line.startswith(("totals:", "summary:")):
                        best = max(best, int(line.split()[1]))
        total += best
    return total


def _tree_pids(pid: int) -> list[int]:
    try:
        proc = psutil.Process(pid)
        return [pid, *(c.pid for c in proc.children(recursive=True))]
    except psutil.NoSuchProcess:
        return [pid]


def count(name: str, *, seconds: float = 15.0, drop: str | None = None, log_dir: Path) -> dict[str, object]:
    """Instructions per request of one server: ``passthrough`` or a pipeline of ``configs/pipelines.yaml``."""
    mock_port, port = free_port(), free_port()
    mock = Proc("mock", [PYTHON, "-m", "benchmarks.mock_upstream", "--port", str(mock_port)], cpus="0", log_dir=log_dir).start()
    out_dir = Path(tempfile.mkdtemp(prefix="callgrind-", dir=log_dir))
    # --trace-children: the gateway's usage committer (a child process, gateway/usage_committer.py) does
    # part of every request's work; it is counted with the server.
    vg = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--trace-children=yes",
          f"--callgrind-out-file={out_dir}/cg.%p"]
    headers: dict[str, str] = {}
    body = chat_body()
    workdir: Path | None = None
    server: Proc | None = None
    try:
        mock.wait_http(f"http://127.0.0.1:{mock_port}/health")
        if name == "passthrough":
            server = Proc("passthrough-cg", vg + [PYTHON, "-m", "benchmarks.passthrough", "--port", str(port),
                                                 "--upstream", f"http://127.0.0.1:{mock_port}"], cpus="1", log_dir=log_dir).start()
            server.wait_tcp(port, timeout=300)
        else:
            entries = pipeline_entries(load_pipelines(), name, drop)
            workdir = Path(tempfile.mkdtemp(prefix="instructions-"))
            cfg = write_config(workdir, port=port, upstream_port=mock_port, entries=entries, workers=1, state_url="memory://")
            if any("auth" in e for e in entries):
                headers["Authorization"] = f"Bearer {seed_key(workdir)}"
            server = Proc(f"gateway-cg-{name}", vg + [PYTHON, "-m", "gateway.cli", "serve", "--config", str(cfg)], cpus="1",
                          log_dir=log_dir, cwd=workdir,
                          env=GATEWAY_ENV).start()
            server.wait_http(f"http://127.0.0.1:{port}/ready", timeout=600)
            if "cache" in name:  # an exact-hit scenario: the same request, stored first
                for _ in range(3):
                    _post(f"http://127.0.0.1:{port}/v1/chat/completions", PRIME_BODY["fixed"], headers)
                    time.sleep(0.5)
            else:
                body = UNIQUE
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        run_wrk(url, body, connections=8, duration=5, headers=headers, taskset="0")  # warm-up, not counted
        pids = _tree_pids(server.pid)
        for pid in pids:
            subprocess.run(["callgrind_control", "-i", "on", str(pid)], capture_output=True, check=False)
        res = run_wrk(url, body, connections=8, duration=seconds, headers=headers, taskset="0")
        for pid in pids:
            subprocess.run(["callgrind_control", "-i", "off", str(pid)], capture_output=True, check=False)
            subprocess.run(["callgrind_control", "-d", str(pid)], capture_output=True, check=False)
        time.sleep(2)
        total = _total_ir(out_dir, pids)
        return {"scenario": name + (f" minus {drop}" if drop else ""), "requests": res.requests, "errors": res.errors,
                "instructions_per_request": round(total / res.requests) if res.requests else None,
                "processes": len(pids)}
    finally:
        if server is not None:
            server.stop(grace=30)
        mock.stop()
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(out_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="instructions per request under callgrind (deterministic cost)")
    p.add_argument("scenarios", nargs="+", help="passthrough, or pipelines from benchmarks/configs/pipelines.yaml")
    p.add_argument("--drop", help="leave this middleware out of the pipeline")
    p.add_argument("--seconds", type=float, default=15.0, help="counted window (the server runs ~50x slower)")
    args = p.parse_args(argv)
    for tool in ("valgrind", "callgrind_control", "wrk"):
        if shutil.which(tool) is None:
            print(f"{tool} not found (apt-get install -y valgrind wrk)", file=sys.stderr)
            return 2
    log_dir = Path(tempfile.mkdtemp(prefix="instructions-logs-"))
    os.chdir(ROOT)
    for name in args.scenarios:
        r = count(name, seconds=args.seconds, drop=args.drop, log_dir=log_dir)
        ipr = r["instructions_per_request"]
        print(f"{r['scenario']}: {'-' if ipr is None else f'{ipr:,}'} instructions/request "
              f"({r['requests']} requests, {r['errors']} errors, {r['processes']} process(es) counted)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
