"""Benchmark scenarios: what the gateway costs against a bare pass-through proxy and the upstream alone.

    python -m benchmarks.run [--quick] [--scenarios NAME|GROUP ...] [--no-pin] [--out DIR]

Topology (two cores): the gateway or the pass-through proxy under test on core 1 (``taskset -c 1``);
the load generator (this process and ``wrk``), the mock upstream and redis-server on core 0.
Every figure that matters is a ratio measured in the same run, because the absolute numbers move
with whatever else the machine does:

* throughput (closed loop, ``wrk`` when it is the faster generator) as a fraction of the pass-through
  proxy's, the pass-through measured right before and after each key scenario (bracketing);
* gateway CPU per request (psutil, the server's own process tree), which noisy neighbours disturb
  much less than req/s, and the capacity ratio it implies;
* open-loop latency at one common rate (half of the full chain's measured maximum), corrected for
  coordinated omission, minus the same percentiles against the upstream directly (added latency);
* streaming: TTFT and inter-chunk gaps added over direct, and events per stream (none held back).

Results: ``benchmarks/results/<timestamp>.json`` and ``.md``, ``latest.json``, ``latest.md`` and
``latest.png``.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import orjson
import psutil
import yaml

from . import loadgen
from .loadgen import BodySource, Result, chat_body
from .procs import PYTHON, ROOT, Proc, can_pin, free_port

HERE = Path(__file__).resolve().parent
CONFIGS = HERE / "configs"
RESULTS = HERE / "results"
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"

CORE_GW = "1"      # the server under test
CORE_LOAD = "0"    # load generator, mock upstream, redis


@dataclass
class Durations:
    closed: float
    open: float
    stream: float
    warmup: float
    concurrency: int = 64
    stream_rate: float = 100.0
    chunk_delay_ms: float = 2.0
    chunks: int = 8

    @classmethod
    def quick(cls) -> "Durations":
        return cls(closed=3, open=3, stream=2, warmup=0.5)

    @classmethod
    def full(cls) -> "Durations":
        return cls(closed=10, open=10, stream=6, warmup=2)


@dataclass
class Scenario:
    name: str
    group: str
    description: str
    target: str = "gateway"             # direct | passthrough | gateway
    pipeline: str | None = None         # a name in configs/pipelines.yaml (or a minus-variant, see below)
    closed: bool = True
    open: bool = True
    stream: bool = False
    body: str = "fixed"                 # fixed | unique (defeats exact caches) | paraphrase (semantic hits)
    state: str = "memory"               # memory | redis
    store: str = "file"                 # file | memory (sqlite:///:memory:)
    workers: int = 1
    pinned: bool = True
    bracket: bool = False               # measure the pass-through right before and after (noise control)
    quick: bool = True                  # part of --quick
    drop: str | None = None             # "full minus X": the middleware left out
    prime: bool = False                 # send the cacheable body once before measuring


def scenarios() -> list[Scenario]:
    out = [
        Scenario("direct", "core", "load generator → mock upstream (no proxy)", target="direct", stream=True),
        Scenario("passthrough", "core", "bare aiohttp pass-through proxy (the ceiling)", target="passthrough", stream=True),
        Scenario("router", "core", "gateway, pipeline [router]", pipeline="router", stream=True, body="unique"),
        Scenario("full_miss", "core", "full chain, cache miss: metrics, auth, ratelimit, budget, dlp, router",
                 pipeline="full", stream=True, body="unique", bracket=True),
        Scenario("router_memstore", "core", "gateway [router], store sqlite :memory: (usage rows not on disk)",
                 pipeline="router", body="unique", store="memory", quick=False),
        Scenario("exact_hit", "cache", "exact cache hit: [semantic_cache(exact), router], same prompt",
                 pipeline="exact_cache", prime=True, bracket=True),
        Scenario("full_exact_hit", "cache", "full chain + exact cache hit", pipeline="full_exact_cache", prime=True, open=False),
        Scenario("semantic_hit", "cache", "semantic cache hit: paraphrased prompt, embedding + vector search",
                 pipeline="semantic_cache", body="paraphrase", prime=True),
        Scenario("redis_state", "state", "full chain, counters on redis-server (state.url redis://)",
                 pipeline="full", body="unique", state="redis"),
        Scenario("workers_1", "scale", "full chain, 1 worker, unpinned (all cores shared with the load)",
                 pipeline="full", body="unique", pinned=False, open=False),
        Scenario("workers_2", "scale", "full chain, 2 workers (SO_REUSEPORT), unpinned",
                 pipeline="full", body="unique", pinned=False, open=False, workers=2),
    ]
    for mw in ("metrics", "auth", "ratelimit", "budget", "dlp"):
        out.append(Scenario(f"full_minus_{mw}", "middleware", f"full chain without {mw} (its share = full − this)",
                            pipeline="full", drop=mw, body="unique", open=False))
    return out


# ------------------------------------------------------------------------------------------ configs

def load_pipelines() -> dict[str, Any]:
    return yaml.safe_load((CONFIGS / "pipelines.yaml").read_text())


def pipeline_entries(spec: dict[str, Any], name: str, drop: str | None = None) -> list[dict[str, Any]]:
    entries = []
    for item in spec["pipelines"][name]:
        mw, _, variant = item.partition(":")
        if mw == drop:
            continue
        opts = dict(spec["options"].get(mw) or {})
        if variant:
            opts.update(spec.get("variants", {}).get(mw, {}).get(variant) or {})
        entries.append({mw: opts})
    return entries


def middleware_missing(entries: list[dict[str, Any]]) -> list[str]:
    """Middlewares whose entry-point module is not importable yet (checked without importing it)."""
    from gateway import registry

    eps = registry.available("middleware")
    missing = []
    for entry in entries:
        (name,) = entry
        ep = eps.get(name)
        if ep is None:
            missing.append(f"{name} (no entry point)")
            continue
        module = ep.value.split(":")[0]
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            missing.append(f"{name} ({module} not present)")
    return missing


def write_config(workdir: Path, *, port: int, upstream_port: int, entries: list[dict[str, Any]], workers: int,
                 state_url: str, store_url: str | None = None) -> Path:
    cfg = yaml.safe_load((CONFIGS / "base.yaml").read_text())
    cfg["server"]["port"] = port
    cfg["server"]["workers"] = workers
    cfg["store"]["url"] = store_url or f"sqlite:///{workdir / 'watchllm.db'}"
    cfg["state"]["url"] = state_url
    cfg["providers"]["up"]["base_url"] = f"http://127.0.0.1:{upstream_port}/v1"
    cfg["pipeline"] = entries
    path = workdir / "gateway.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


async def _seed_key(db_url: str) -> str:
    """A project and an API key in the scenario's store (the auth middleware needs one)."""
    from gateway.crypto import generate_api_key, hash_api_key
    from gateway.store import open_store

    store = await open_store(db_url)
    try:
        org = await store.orgs.create("bench")
        project = await store.projects.create(org_id=org["id"], name="bench")
        plaintext, parts = generate_api_key()
        await store.api_keys.create(key_id=parts.key_id, project_id=project["id"], prefix=parts.prefix,
                                    secret_hash=hash_api_key(plaintext), name="bench")
        return plaintext
    finally:
        await store.close()


def seed_key(workdir: Path) -> str:
    return asyncio.run(_seed_key(f"sqlite:///{workdir / 'watchllm.db'}"))


# ------------------------------------------------------------------------------------------ bodies

def body_for(kind: str, *, stream: bool = False) -> BodySource:
    if kind == "unique":
        return BodySource(chat_body(stream=stream, prompt="Request {n}: summarise the benefits of connection pooling in two sentences."))
    if kind == "paraphrase":
        # Differs per request (exact cache misses) but means the same (semantic cache hits).
        return BodySource(chat_body(stream=stream, prompt="Please summarise the benefits of connection pooling in two sentences, {n}."),
                          words=True)
    return BodySource(chat_body(stream=stream))


PRIME_BODY = {
    "fixed": chat_body(),
    "paraphrase": chat_body(prompt="Please summarise the benefits of connection pooling in two sentences."),
}


def _post(url: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    req = urllib.request.Request(url, data=orjson.dumps(body), headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            r.read()
            return r.status, dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers or {})


def upstream_requests(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as r:
        return int(orjson.loads(r.read())["requests"])


# ------------------------------------------------------------------------------------------ runner

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
               duration: float | None = None) -> dict[str, Any]:
        duration = duration or self.dur.closed
        f0 = self.foreign(server)
        cpu0 = server.cpu_s() if server else None
        up0 = upstream_requests(self.mock_port)
        if self.use_wrk and loadgen.wrk_available() and not body.words:  # wrk's Lua counter writes digits
            raw = body.prefix + b"{n}" + body.suffix if body.unique else body.fixed
            res = loadgen.run_wrk(url, orjson.loads(raw), connections=self.dur.concurrency, duration=duration, headers=headers,
                                  taskset=self.cpus(CORE_LOAD))
        else:
            res = asyncio.run(loadgen.closed_loop(url, body, concurrency=self.dur.concurrency, duration=duration, headers=headers))
        out = res.to_dict()
        out["foreign_cpu_pct"] = self.foreign_pct(f0, server)
        if server is not None and cpu0 is not None and res.requests:
            out["server_cpu_us_per_req"] = round((server.cpu_s() - cpu0) / res.requests * 1e6, 1)
        if res.requests:
            out["upstream_calls_per_req"] = round((upstream_requests(self.mock_port) - up0) / res.requests, 3)
        return out

    def open(self, url: str, body: BodySource, headers: dict[str, str], rate: float, server: Proc | None = None) -> dict[str, Any]:
        # warm-up at the same rate: the server's pools and caches fill before measuring
        asyncio.run(loadgen.open_loop(url, body, rate=rate, duration=min(1.0, self.dur.warmup), headers=headers))
        f0 = self.foreign(server)
        cpu0 = server.cpu_s() if server else None
        res = asyncio.run(loadgen.open_loop(url, body, rate=rate, duration=self.dur.open, headers=headers, max_connections=256))
        out = res.to_dict()
        out["foreign_cpu_pct"] = self.foreign_pct(f0, server)
        if server is not None and cpu0 is not None and res.requests:
            out["server_cpu_us_per_req"] = round((server.cpu_s() - cpu0) / res.requests * 1e6, 1)
        return out

    def stream(self, url: str, headers: dict[str, str]) -> dict[str, Any]:
        body = body_for("unique", stream=True)
        res = asyncio.run(loadgen.open_loop(url, body, rate=self.dur.stream_rate, duration=self.dur.stream, headers=headers,
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
                  cpus=self.cpus(CORE_GW, sc.pinned), log_dir=self.log_dir, cwd=workdir, env={"LOG_LEVEL": "WARNING", "WATCHLLM_ALLOW_PRIVATE_UPSTREAMS": "127.0.0.1"})
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
            row["closed"] = self.closed(url, body, headers, server)
            _print_closed(sc.name, row["closed"])
            if self.rate is None and sc.target == "gateway" and row["closed"]["rps"]:
                # The common open-loop rate: half of the first gateway scenario's maximum (full_miss runs first).
                self.rate = round(row["closed"]["rps"] / 2, 1)
                print(f"    common open-loop rate = {self.rate:,.0f} req/s (half of {sc.name} max)", flush=True)
        if sc.bracket:
            row["passthrough_after"] = self.measure_passthrough(f"after {sc.name}")
        if sc.open and self.rate:
            rate = self.rate
            own = row.get("closed", {}).get("rps")
            if own and own < 2 * rate:  # a scenario slower than 2× the common rate would only measure its queue
                rate = round(own / 2, 1)
            row["open"] = self.open(url, body, headers, rate, server)
            _print_open(sc.name, row["open"])
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
    print(f"    {name} open @ {r['rate']:,.0f}/s: p50 {lat.get('p50')} p90 {lat.get('p90')} p99 {lat.get('p99')} ms, "
          f"errors {r['errors']}, other processes {r.get('foreign_cpu_pct')}% CPU", flush=True)


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


def select(all_sc: list[Scenario], names: list[str] | None, quick: bool) -> list[Scenario]:
    if names:
        wanted = set(names)
        chosen = [s for s in all_sc if s.name in wanted or s.group in wanted]
        # the references every ratio needs
        ref = {"direct", "passthrough", "full_miss"}
        return [s for s in all_sc if s in chosen or s.name in ref]
    return [s for s in all_sc if s.quick or not quick]


def main(argv: list[str] | None = None) -> int:
    from .report import write_outputs

    p = argparse.ArgumentParser(description="WatchLLM benchmark scenarios")
    p.add_argument("--quick", action="store_true", help="short runs (about 3 minutes in all)")
    p.add_argument("--scenarios", nargs="*", help="names or groups (core, cache, state, scale, middleware); default all")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--python-load", action="store_true", help="use the Python client even where wrk is faster")
    args = p.parse_args(argv)

    all_sc = scenarios()
    if args.list:
        for s in all_sc:
            print(f"{s.name:<22} {s.group:<11} {s.description}")
        return 0
    dur = Durations.quick() if args.quick else Durations.full()
    pin = not args.no_pin and can_pin()
    if pin:
        os.sched_setaffinity(0, {int(CORE_LOAD)})  # this process is the Python load generator
    try:
        import uvloop
        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log_dir = Path(tempfile.mkdtemp(prefix=f"bench-logs-{stamp}-"))
    chosen = select(all_sc, args.scenarios, args.quick)
    spec = load_pipelines()
    bench = Bench(dur=dur, pin=pin, log_dir=log_dir)
    t_start = time.monotonic()
    print(f"WatchLLM benchmarks ({'quick' if args.quick else 'full'}), pinning: "
          f"{'gateway/proxy on core ' + CORE_GW + ', load+mock+redis on core ' + CORE_LOAD if pin else 'off'}; logs in {log_dir}",
          flush=True)
    try:
        bench.calibrate()
        if args.python_load:
            bench.use_wrk = False
        bench.start_common()
        first = ("passthrough", "full_miss", "router")
        order = sorted(chosen, key=lambda s: first.index(s.name) if s.name in first else len(first))
        by_name: dict[str, dict[str, Any]] = {}
        for sc in order:
            if bench.rate is None and sc.name not in first:
                pt_rps = (by_name.get("passthrough", {}).get("closed") or {}).get("rps")
                bench.rate = round(pt_rps / 2, 1) if pt_rps else 200.0
                print(f"    no gateway scenario measured: common open-loop rate = {bench.rate:,.0f} req/s", flush=True)
            pt = by_name.get("passthrough")
            if bench.rate and pt and pt.get("status") == "ok" and "open" not in pt:
                # the pass-through ran before the common rate was known: its open loop now
                pt["open"] = bench.open(f"http://127.0.0.1:{bench.pt_port}/v1/chat/completions", body_for("fixed"), {},
                                        bench.rate, bench.pt)
                _print_open("passthrough", pt["open"])
            print(f"[{time.monotonic() - t_start:5.0f}s] {sc.name}: {sc.description}", flush=True)
            try:
                row = bench.run_scenario(sc, spec)
            except Exception as exc:
                row = {"name": sc.name, "group": sc.group, "description": sc.description, "status": "failed",
                       "reason": f"{type(exc).__name__}: {exc}"}
            if row.get("status") != "ok":
                print(f"    {row['status']}: {row.get('reason')}", flush=True)
            by_name[sc.name] = row
            bench.results.append(row)
        pt = by_name.get("passthrough")
        if bench.rate and pt and pt.get("status") == "ok" and "open" not in pt:
            pt["open"] = bench.open(f"http://127.0.0.1:{bench.pt_port}/v1/chat/completions", body_for("fixed"), {},
                                    bench.rate, bench.pt)
    finally:
        bench.stop_common()
    elapsed = time.monotonic() - t_start
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "stamp": stamp, "mode": "quick" if args.quick else "full",
            "elapsed_s": round(elapsed, 1), "machine": machine(), "pinning": {
                "enabled": pin, "server_under_test": f"taskset -c {CORE_GW}" if pin else None,
                "load_mock_redis": f"taskset -c {CORE_LOAD}" if pin else None},
            "durations": dur.__dict__, "open_loop_rate": bench.rate, "calibration": bench.calibration,
            "passthrough_rps_samples": bench.passthrough_rps, "log_dir": str(log_dir)}
    paths = write_outputs(meta, bench.results, out_dir)
    print(f"done in {elapsed:.0f}s: " + ", ".join(str(p) for p in paths), flush=True)
    print((out_dir / "latest.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
