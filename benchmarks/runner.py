"""The measuring runner: ``Bench`` starts the shared processes (mock upstream, pass-through proxy,
redis-server), calibrates the load generators, starts each scenario's gateway and measures it (closed loop,
open loop, streaming; server CPU per request, other processes' CPU); the progress lines it prints; and
``machine()``, the host description in the report."""
from __future__ import annotations

import asyncio
import os
import platform
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psutil
import yaml

from . import loadgen
from .gateway_setup import _post, middleware_missing, pipeline_entries, seed_key, upstream_requests, write_config
from .loadgen import BodySource, chat_body
from .procs import CORE_GW, CORE_LOAD, GATEWAY_ENV, PYTHON, ROOT, Proc, can_pin, free_port
from .scenarios import PRIME_BODY, Durations, Scenario, body_for

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


@dataclass
class Bench:
    dur: Durations
    pin: bool
    log_dir: Path
    use_wrk: bool = True
    rate: float | None = None           # common open-loop rate
    results: list[dict[str, Any]] = field(default_factory=list)
    calibration: dict[str, Any] = field(default_factory=dict)
    passthrough_rps: list[float] = field(default_factory=list)
    mock_port: int = 0
    pt_port: int = 0
    pt: Proc | None = None
    redis_port: int | None = None
    redis: Proc | None = None

    def cpus(self, which: str, pinned: bool = True) -> str | None:
        return which if (self.pin and pinned and can_pin()) else None

    # -- measurement primitives

    def ours_cpu_s(self, server: Proc | None) -> float:
        """CPU seconds used so far by every process of ours (this one, finished children such as wrk, servers)."""
        t = os.times()
        total = t.user + t.system + t.children_user + t.children_system
        for p in {id(x): x for x in (server, self.pt, getattr(self, "mock", None), self.redis) if x is not None}.values():
            if p.popen is not None and p.popen.poll() is None:
                total += p.cpu_s()
        return total

    def foreign(self, server: Proc | None) -> tuple[float, float, float]:
        ct = psutil.cpu_times()
        return (time.monotonic(), ct.user + ct.system + ct.nice + getattr(ct, "irq", 0) + getattr(ct, "softirq", 0),
                self.ours_cpu_s(server))

    def foreign_pct(self, start: tuple[float, float, float], server: Proc | None) -> float:
        """Share of the machine's CPU used by processes that are not ours during a measurement (noise)."""
        end = self.foreign(server)
        wall = end[0] - start[0]
        if wall <= 0:
            return 0.0
        other = (end[1] - start[1]) - (end[2] - start[2])
        return round(max(0.0, other) / (wall * (os.cpu_count() or 1)) * 100, 1)

    def closed(self, url: str, body: BodySource, headers: dict[str, str], server: Proc | None, *,
               duration: float | None = None, concurrency: int | None = None) -> dict[str, Any]:
        duration = duration or self.dur.closed
        concurrency = concurrency or self.dur.concurrency
        f0 = self.foreign(server)
        cpu0 = server.cpu_s() if server else None
        up0 = upstream_requests(self.mock_port)
        if self.use_wrk and loadgen.wrk_available() and not body.words:  # wrk's Lua counter writes digits
            raw = body.prefix + b"{n}" + body.suffix if body.unique else body.fixed
            res = loadgen.run_wrk(url, orjson.loads(raw), connections=concurrency, duration=duration, headers=headers,
                                  taskset=self.cpus(CORE_LOAD))
        else:
            res = asyncio.run(loadgen.closed_loop(url, body, concurrency=concurrency, duration=duration, headers=headers))
        out = res.to_dict()
        out["foreign_cpu_pct"] = self.foreign_pct(f0, server)
        if server is not None and cpu0 is not None and res.requests:
            out["server_cpu_us_per_req"] = round((server.cpu_s() - cpu0) / res.requests * 1e6, 1)
        if res.requests:
            out["upstream_calls_per_req"] = round((upstream_requests(self.mock_port) - up0) / res.requests, 3)
        return out

    def open(self, url: str, body: BodySource, headers: dict[str, str], rate: float, server: Proc | None = None) -> dict[str, Any]:
        # warm-up at the same rate: the server's pools and caches fill before measuring
        loadgen.run_open(loadgen.open_loop(url, body, rate=rate, duration=min(1.0, self.dur.warmup), headers=headers))
        f0 = self.foreign(server)
        cpu0 = server.cpu_s() if server else None
        res = loadgen.run_open(loadgen.open_loop(url, body, rate=rate, duration=self.dur.open, headers=headers, max_connections=256))
        out = res.to_dict()
        out["foreign_cpu_pct"] = self.foreign_pct(f0, server)
        if server is not None and cpu0 is not None and res.requests:
            out["server_cpu_us_per_req"] = round((server.cpu_s() - cpu0) / res.requests * 1e6, 1)
        return out

    def stream(self, url: str, headers: dict[str, str]) -> dict[str, Any]:
        body = body_for("unique", stream=True)
        res = loadgen.run_open(loadgen.open_loop(url, body, rate=self.dur.stream_rate, duration=self.dur.stream, headers=headers,
                                            stream=True, warmup=min(0.5, self.dur.warmup)))
        return res.to_dict()

    def warm(self, url: str, body: BodySource, headers: dict[str, str]) -> None:
        if self.dur.warmup > 0:
            asyncio.run(loadgen.closed_loop(url, body, concurrency=8, duration=self.dur.warmup, headers=headers))

    # -- fixtures

    def start_common(self) -> None:
        self.mock_port = free_port()
        self.mock = Proc("mock_upstream", [PYTHON, "-m", "benchmarks.mock_upstream", "--port", str(self.mock_port),
                                           "--chunks", str(self.dur.chunks), "--chunk-delay-ms", str(self.dur.chunk_delay_ms)],
                         cpus=self.cpus(CORE_LOAD), log_dir=self.log_dir).start()
        self.mock.wait_http(f"http://127.0.0.1:{self.mock_port}/health")
        self.pt_port = free_port()
        self.pt = Proc("passthrough", [PYTHON, "-m", "benchmarks.passthrough", "--port", str(self.pt_port),
                                       "--upstream", f"http://127.0.0.1:{self.mock_port}"],
                       cpus=self.cpus(CORE_GW), log_dir=self.log_dir).start()
        self.pt.wait_tcp(self.pt_port)

    def ensure_redis(self) -> int:
        if self.redis_port is None:
            if not os.path.exists(REDIS_SERVER):
                raise FileNotFoundError("redis-server not installed (apt-get install -y redis-server)")
            self.redis_port = free_port()
            self.redis = Proc("redis", [REDIS_SERVER, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
                                        "--appendonly", "no"], cpus=self.cpus(CORE_LOAD), log_dir=self.log_dir).start()
            self.redis.wait_tcp(self.redis_port)
        return self.redis_port

    def stop_common(self) -> None:
        for p in (getattr(self, "pt", None), getattr(self, "mock", None), self.redis):
            if p is not None:
                p.stop()

    def calibrate(self) -> None:
        """How fast can each generator go? Against a mock upstream alone on the other core."""
        port = free_port()
        cal = Proc("mock_calibration", [PYTHON, "-m", "benchmarks.mock_upstream", "--port", str(port)],
                   cpus=self.cpus(CORE_GW), log_dir=self.log_dir).start()
        try:
            cal.wait_http(f"http://127.0.0.1:{port}/health")
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            body = body_for("fixed")
            d = min(self.dur.closed, 3)
            asyncio.run(loadgen.closed_loop(url, body, concurrency=16, duration=0.3))
            py = asyncio.run(loadgen.closed_loop(url, body, concurrency=self.dur.concurrency, duration=d))
            self.calibration["python_closed"] = _brief(py.to_dict())
            if loadgen.wrk_available():
                wrk = loadgen.run_wrk(url, chat_body(), connections=self.dur.concurrency, duration=d, taskset=self.cpus(CORE_LOAD))
                self.calibration["wrk_closed"] = _brief(wrk.to_dict())
                self.use_wrk = wrk.rps >= py.rps
            else:
                self.use_wrk = False
                self.calibration["wrk_closed"] = None
            self.calibration["closed_loop_tool"] = "wrk" if self.use_wrk else "python"
            print(f"  calibration: python closed {py.rps:,.0f} req/s; wrk "
                  f"{self.calibration['wrk_closed']['rps'] if self.calibration['wrk_closed'] else '-'} req/s "
                  f"→ closed loop with {self.calibration['closed_loop_tool']}", flush=True)
        finally:
            cal.stop()

    def measure_passthrough(self, label: str) -> float:
        assert self.pt is not None
        url = f"http://127.0.0.1:{self.pt_port}/v1/chat/completions"
        r = self.closed(url, body_for("fixed"), {}, self.pt, duration=min(self.dur.closed, 3))
        self.passthrough_rps.append(r["rps"])
        print(f"    passthrough ({label}): {r['rps']:,.0f} req/s", flush=True)
        return r["rps"]

    def interleave(self, name: str, url: str, body: BodySource, headers: dict[str, str], server: Proc | None) -> dict[str, Any]:
        """Short closed-loop runs alternating between this scenario and the pass-through (both servers stay
        up on the same core), in ABBA order: each round's ratio compares two runs seconds apart, so a
        neighbour's load that comes and goes over tens of seconds cancels out in the median."""
        assert self.pt is not None
        pt_url = f"http://127.0.0.1:{self.pt_port}/v1/chat/completions"
        d = self.dur.interleave_s
        rps: list[float] = []
        cpu: list[float] = []
        for i in range(self.dur.interleave_rounds):
            order = ("pt", "gw") if i % 2 == 0 else ("gw", "pt")
            got: dict[str, dict[str, Any]] = {}
            for which in order:
                if which == "pt":
                    got[which] = self.closed(pt_url, body_for("fixed"), {}, self.pt, duration=d)
                else:
                    got[which] = self.closed(url, body, headers, server, duration=d)
            if got["pt"]["rps"] and got["gw"]["rps"]:
                rps.append(round(got["gw"]["rps"] / got["pt"]["rps"], 3))
            c_pt, c_gw = got["pt"].get("server_cpu_us_per_req"), got["gw"].get("server_cpu_us_per_req")
            if c_pt and c_gw:
                cpu.append(round(c_pt / c_gw, 3))
        out = {"rounds": self.dur.interleave_rounds, "seconds": d, "rps_ratios": rps, "cpu_ratios": cpu,
               "rps_ratio_median": round(statistics.median(rps), 3) if rps else None,
               "cpu_ratio_median": round(statistics.median(cpu), 3) if cpu else None}
        print(f"    {name} vs passthrough, interleaved {len(rps)} rounds of {d:g} s: req/s ratio median "
              f"{out['rps_ratio_median']} (range {min(rps, default=0):.2f}–{max(rps, default=0):.2f}), CPU ratio median "
              f"{out['cpu_ratio_median']}", flush=True)
        return out

    def interleave_open(self, name: str, url: str, body: BodySource, headers: dict[str, str], rate: float) -> dict[str, Any]:
        """Open loops at ``rate`` alternating between the upstream alone (direct) and this scenario, in ABBA
        order; each round's added p50/p99 compares two runs seconds apart. A stall of the machine (seen: a
        direct p99 of 112 ms in one 10 s run) then spoils one round, not the comparison."""
        direct_url = f"http://127.0.0.1:{self.mock_port}/v1/chat/completions"
        d = self.dur.latency_s
        added: dict[str, list[float]] = {"p50": [], "p99": []}
        for i in range(self.dur.latency_rounds):
            order = ("direct", "gw") if i % 2 == 0 else ("gw", "direct")
            got: dict[str, dict[str, float]] = {}
            for which in order:
                u, b, h = (direct_url, body_for("unique"), {}) if which == "direct" else (url, body, headers)
                res = loadgen.run_open(loadgen.open_loop(u, b, rate=rate, duration=d, headers=h, max_connections=256))
                got[which] = res.latency_ms
            for p in added:
                if got["gw"].get(p) is not None and got["direct"].get(p) is not None:
                    added[p].append(round(got["gw"][p] - got["direct"][p], 3))
        out = {"rounds": self.dur.latency_rounds, "seconds": d, "rate": rate,
               "added_p50_ms": added["p50"], "added_p99_ms": added["p99"],
               "added_p50_median": round(statistics.median(added["p50"]), 3) if added["p50"] else None,
               "added_p99_median": round(statistics.median(added["p99"]), 3) if added["p99"] else None}
        print(f"    {name} vs direct, open loop @ {rate:,.0f}/s, interleaved {len(added['p99'])} rounds of {d:g} s: added p50 "
              f"median {out['added_p50_median']} ms, added p99 median {out['added_p99_median']} ms "
              f"(p99 range {min(added['p99'], default=0):.2f}–{max(added['p99'], default=0):.2f})", flush=True)
        return out

    # -- scenarios

    def run_scenario(self, sc: Scenario, spec: dict[str, Any]) -> dict[str, Any]:
        row: dict[str, Any] = {"name": sc.name, "group": sc.group, "description": sc.description, "target": sc.target,
                               "workers": sc.workers, "state": sc.state, "pinned": sc.pinned and self.pin}
        if sc.target == "direct":
            url = f"http://127.0.0.1:{self.mock_port}/v1/chat/completions"
            return self._measure(sc, row, url, {}, server=None)
        if sc.target == "passthrough":
            url = f"http://127.0.0.1:{self.pt_port}/v1/chat/completions"
            return self._measure(sc, row, url, {}, server=self.pt)
        if sc.target == "passthrough_lean":
            lean_port = free_port()
            lean = Proc("passthrough_lean", [PYTHON, "-m", "benchmarks.passthrough_lean", "--port", str(lean_port),
                                             "--upstream", f"http://127.0.0.1:{self.mock_port}"],
                        cpus=self.cpus(CORE_GW), log_dir=self.log_dir, env={"WATCHLLM_ALLOW_PRIVATE_UPSTREAMS": "127.0.0.1"}).start()
            try:
                lean.wait_tcp(lean_port)
                return self._measure(sc, row, f"http://127.0.0.1:{lean_port}/v1/chat/completions", {}, server=lean)
            finally:
                lean.stop()

        assert sc.pipeline is not None
        entries = pipeline_entries(spec, sc.pipeline, sc.drop)
        row["pipeline"] = [next(iter(e)) for e in entries]
        missing = middleware_missing(entries)
        if missing:
            return {**row, "status": "skipped", "reason": "middleware not available yet: " + ", ".join(missing)}
        if sc.drop and sc.drop not in spec["pipelines"][sc.pipeline]:
            return {**row, "status": "skipped", "reason": f"{sc.drop} not in pipeline {sc.pipeline}"}
        state_url = "memory://"
        if sc.state == "redis":
            try:
                state_url = f"redis://127.0.0.1:{self.ensure_redis()}/0"
            except Exception as exc:
                return {**row, "status": "skipped", "reason": str(exc)}

        workdir = Path(tempfile.mkdtemp(prefix=f"bench-{sc.name}-"))
        port = free_port()
        cfg_path = write_config(workdir, port=port, upstream_port=self.mock_port, entries=entries, workers=sc.workers,
                                state_url=state_url, store_url="sqlite:///:memory:" if sc.store == "memory" else None)
        row["config"] = yaml.safe_load(cfg_path.read_text())
        headers: dict[str, str] = {}
        if "auth" in row["pipeline"]:
            try:
                headers["Authorization"] = f"Bearer {seed_key(workdir)}"
            except Exception as exc:
                return {**row, "status": "skipped", "reason": f"cannot seed an API key: {type(exc).__name__}: {exc}"}

        gw = Proc(f"gateway-{sc.name}", [str(ROOT / ".venv/bin/watchllm") if (ROOT / ".venv/bin/watchllm").exists()
                                         else PYTHON, *([] if (ROOT / ".venv/bin/watchllm").exists() else ["-m", "gateway.cli"]),
                                         "serve", "--config", str(cfg_path)],
                  cpus=self.cpus(CORE_GW, sc.pinned), log_dir=self.log_dir, cwd=workdir, env={**GATEWAY_ENV, **sc.env})
        gw.start()
        try:
            try:
                gw.wait_http(f"http://127.0.0.1:{port}/ready", timeout=90)
            except RuntimeError as exc:  # exited: a config problem (a middleware's options, a missing piece)
                return {**row, "status": "skipped", "reason": "gateway did not start: " + _last_lines(str(exc), 6)}
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            status, hdrs = _post(url, chat_body(), headers)
            if status != 200:
                return {**row, "status": "failed", "reason": f"probe request answered HTTP {status}: {gw.log_tail(600)}"}
            if sc.prime:
                pb = PRIME_BODY["paraphrase" if sc.body == "paraphrase" else "fixed"]
                for _ in range(3):
                    _post(url, pb, headers)
                    time.sleep(0.2)  # a cache may store after the reply completes
                _, hdrs = _post(url, pb, headers)
                row["prime_headers"] = {k: v for k, v in hdrs.items() if k.lower().startswith("x-watchllm")}
            row["rss_mb_start"] = round(gw.rss_mb(), 1)
            return self._measure(sc, row, url, headers, server=gw)
        finally:
            row["rss_mb_end"] = round(gw.rss_mb(), 1) if gw.popen and gw.popen.poll() is None else None
            row["exit_code"] = gw.stop()
            shutil.rmtree(workdir, ignore_errors=True)

    def _measure(self, sc: Scenario, row: dict[str, Any], url: str, headers: dict[str, str], server: Proc | None) -> dict[str, Any]:
        body = body_for(sc.body)
        self.warm(url, body, headers)
        if sc.bracket:
            row["passthrough_before"] = self.measure_passthrough(f"before {sc.name}")
        if sc.closed:
            row["closed"] = self.closed(url, body, headers, server, concurrency=sc.concurrency)
            _print_closed(sc.name, row["closed"])
            if self.rate is None and sc.target == "gateway" and row["closed"]["rps"]:
                # The common open-loop rate: half of the first gateway scenario's maximum (full_miss runs first).
                self.rate = round(row["closed"]["rps"] / 2, 1)
                print(f"    common open-loop rate = {self.rate:,.0f} req/s (half of {sc.name} max)", flush=True)
        if sc.bracket:
            row["passthrough_after"] = self.measure_passthrough(f"after {sc.name}")
            row["interleaved"] = self.interleave(sc.name, url, body, headers, server)
        if sc.open and self.rate:
            rate = self.rate
            own = row.get("closed", {}).get("rps")
            if own and own < 2 * rate:  # a scenario slower than 2× the common rate would only measure its queue
                rate = round(own / 2, 1)
            row["open"] = self.open(url, body, headers, rate, server)
            _print_open(sc.name, row["open"])
            if sc.latency_rounds:
                row["open_interleaved"] = self.interleave_open(sc.name, url, body, headers, rate)
        if sc.stream:
            row["stream"] = self.stream(url, headers)
            _print_stream(sc.name, row["stream"])
        row["status"] = "ok"
        return row


def _brief(r: dict[str, Any]) -> dict[str, Any]:
    return {"tool": r["tool"], "rps": r["rps"], "requests": r["requests"], "errors": r["errors"], "latency_ms": r["latency_ms"],
            "client_cpu_s": r.get("client_cpu_s")}


def _last_lines(text: str, n: int) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(lines[-n:])


def _print_closed(name: str, r: dict[str, Any]) -> None:
    lat = r["latency_ms"]
    print(f"    {name} closed ({r['tool']} c={r.get('concurrency')}): {r['rps']:,.0f} req/s, p50 {lat.get('p50')} ms, "
          f"errors {r['errors']}, server CPU {r.get('server_cpu_us_per_req', '-')} µs/req, "
          f"upstream calls/req {r.get('upstream_calls_per_req', '-')}, other processes {r.get('foreign_cpu_pct')}% CPU", flush=True)


def _print_open(name: str, r: dict[str, Any]) -> None:
    lat = r["latency_ms"]
    client = (f"client {r['tool']} {r['client_cpu_s'] / r['requests'] * 1e6:.0f} µs/req, sends late p99 "
              f"{(r.get('late_sends_ms') or {}).get('p99', '-')} ms") if r.get("requests") else "client -"
    print(f"    {name} open @ {r['rate']:,.0f}/s: p50 {lat.get('p50')} p90 {lat.get('p90')} p99 {lat.get('p99')} ms, "
          f"errors {r['errors']}, {client}, other processes {r.get('foreign_cpu_pct')}% CPU", flush=True)


def _print_stream(name: str, r: dict[str, Any]) -> None:
    print(f"    {name} stream @ {r['rate']:,.0f}/s: TTFT p50 {r['ttft_ms'].get('p50')} p99 {r['ttft_ms'].get('p99')} ms; "
          f"gap p50 {r['gap_ms'].get('p50')} p99 {r['gap_ms'].get('p99')} ms; events/stream "
          f"{r['events_per_stream'].get('min')}–{r['events_per_stream'].get('max')}; errors {r['errors']}", flush=True)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import aiohttp
    try:
        import uvloop
        uv = uvloop.__version__
    except ImportError:  # pragma: no cover
        uv = None
    import psutil
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "kernel": platform.release(), "python": platform.python_version(), "aiohttp": aiohttp.__version__, "uvloop": uv,
            "orjson": orjson.__version__, "wrk": bool(loadgen.wrk_available()), "hostname": platform.node(),
            "load_avg_at_start": os.getloadavg()}

