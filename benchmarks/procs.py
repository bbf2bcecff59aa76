"""Child processes for benchmarks: mock upstream, pass-through proxy, gateway, redis-server.

Each is started pinned to a CPU set with ``taskset`` (when the machine has two or more cores), waits
until it answers over HTTP (or TCP), and is stopped with SIGTERM, then SIGKILL after a grace period.
Only processes started here are ever signalled.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Sequence

import psutil

__all__ = ["ROOT", "PYTHON", "CORE_GW", "CORE_LOAD", "free_port", "can_pin", "Proc", "tree_rss_mb", "tree_cpu_s"]

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

CORE_GW = "1"      # the server under test
CORE_LOAD = "0"    # load generator, mock upstream, redis
# The gateway as shipped logs one JSON line per request (LOG_LEVEL INFO). The benchmarks run it at
# WARNING (no request lines), as every earlier run did, so figures stay comparable across runs; the
# `full_plus_request_log` scenario measures what the lines cost. BENCH_LOG_LEVEL=INFO runs all at INFO.
LOG_LEVEL = os.environ.get("BENCH_LOG_LEVEL", "WARNING")
GATEWAY_ENV = {"LOG_LEVEL": LOG_LEVEL, "WATCHLLM_ALLOW_PRIVATE_UPSTREAMS": "127.0.0.1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def can_pin() -> bool:
    return shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2


def _tree(pid: int) -> list[psutil.Process]:
    try:
        p = psutil.Process(pid)
        return [p, *p.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_rss_mb(pid: int) -> float:
    total = 0
    for p in _tree(pid):
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def tree_cpu_s(pid: int) -> float:
    total = 0.0
    for p in _tree(pid):
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


class Proc:
    def __init__(self, name: str, cmd: Sequence[str], *, cpus: str | None, log_dir: Path, cwd: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        # Unpinned means every CPU: a child inherits this process's affinity, and the runner pins itself to
        # CORE_LOAD, so until 2026-12-06 the "unpinned" workers scenarios ran on the load generator's core.
        if can_pin():
            self.cmd = ["taskset", "-c", cpus or f"0-{(os.cpu_count() or 1) - 1}", *cmd]
        else:
            self.cmd = list(cmd)
        self.cpus = cpus if cpus and can_pin() else None
        self.log_path = log_dir / f"{name}.log"
        self.cwd = cwd or ROOT
        self.env = {**os.environ, **(env or {})}
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def start(self) -> "Proc":
        self._log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(self.cmd, cwd=self.cwd, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        return self

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def wait_http(self, url: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen is not None and self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"{self.name} did not answer {url} within {timeout}s:\n{self.log_tail()}")

    def wait_tcp(self, port: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen is not None and self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"{self.name} not listening on {port} within {timeout}s")

    def rss_mb(self) -> float:
        return tree_rss_mb(self.pid)

    def cpu_s(self) -> float:
        return tree_cpu_s(self.pid)

    def stop(self, grace: float = 8.0) -> int | None:
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(signal.SIGTERM)
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                # Our own process group (start_new_session): the gateway and its worker children.
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        self._log.close()
        return self.popen.returncode

    def __enter__(self) -> "Proc":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
