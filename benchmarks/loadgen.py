"""Load generator: closed loop, open loop (corrected for coordinated omission), SSE, and a ``wrk`` driver.

    python -m benchmarks.loadgen --url http://127.0.0.1:8787/v1/chat/completions --mode closed -c 64 -d 10
    python -m benchmarks.loadgen --url ... --mode open --rate 1000 -d 10
    python -m benchmarks.loadgen --url ... --mode open --rate 50 -d 10 --stream
    python -m benchmarks.loadgen --url ... --mode wrk -c 64 -d 10

* **closed**: ``concurrency`` workers, each sending its next request when the previous answer is read.
  Measures capacity; its latencies hide queueing (a slow server slows the senders down).
* **open**: requests are *scheduled* at a fixed rate (``t0 + i/rate``) whatever the server does, and
  each latency is measured from its **intended** send time, not from when the client got round to
  sending it. A stall therefore shows up in the percentiles of every request it delayed, as wrk2 does
  (coordinated-omission correction).
* **stream**: the body asks for SSE; TTFT is the time to the first ``data:`` event, and every gap
  between two consecutive events is recorded, plus the number of events per stream.
* **wrk**: Debian's ``wrk`` (C, epoll) with a generated Lua script, for closed-loop JSON throughput
  when it out-runs the Python client (``calibrate()`` measures both against the same server).

Every loop is bounded by a duration and a request cap. Percentiles are nearest-rank on the full
sample (no histogram bucketing).
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import math
import os
import re
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Awaitable, Callable, Sequence

import aiohttp
import orjson

from . import h1client

__all__ = ["Result", "percentiles", "chat_body", "BodySource", "closed_loop", "open_loop", "run_open", "run_wrk", "wrk_available", "main"]

PCTS = (50.0, 90.0, 99.0, 99.9)


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """Nearest-rank percentiles of ``values`` (milliseconds in, milliseconds out)."""
    if not values:
        return {"n": 0}
    s = sorted(values)
    n = len(s)
    out: dict[str, float] = {"n": n}
    for p in PCTS:
        rank = max(1, math.ceil(p / 100 * n))
        out[f"p{p:g}".replace(".", "_")] = round(s[rank - 1], 4)
    out["max"] = round(s[-1], 4)
    out["min"] = round(s[0], 4)
    out["mean"] = round(sum(s) / n, 4)
    return out


def chat_body(model: str = "bench", *, stream: bool = False, prompt: str | None = None, max_tokens: int = 64) -> dict[str, Any]:
    """A typical ~200-byte chat request. ``{n}`` in the prompt becomes a per-request counter."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a concise assistant."},
            {"role": "user", "content": prompt or "Summarise the benefits of connection pooling in two sentences."},
        ],
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    if stream:
        body["stream"] = True
    return body


class BodySource:
    """Request bodies: one fixed body, or a unique one per request (``{n}`` in the prompt → counter).

    Unique bodies defeat exact caches, so a "cache miss" scenario really misses.
    """

    # Plain lower-case words, for counters that must not look like numbers or names to a cache's guards.
    WORDS = ("really", "briefly", "clearly", "simply", "kindly", "plainly", "gently", "calmly")

    def __init__(self, body: dict[str, Any], *, words: bool = False) -> None:
        self.words = words
        raw = orjson.dumps(body)
        if b"{n}" in raw:
            self.prefix, _, self.suffix = raw.partition(b"{n}")
            self.fixed: bytes | None = None
        else:
            self.prefix = self.suffix = b""
            self.fixed = raw
        self._n = 0

    @property
    def unique(self) -> bool:
        return self.fixed is None

    def next(self) -> bytes:
        if self.fixed is not None:
            return self.fixed
        self._n += 1
        return self.prefix + (self._word_counter(self._n) if self.words else str(self._n).encode()) + self.suffix

    @classmethod
    def _word_counter(cls, n: int) -> bytes:
        """n written in base 8 with words: unique per request, no digits (e.g. 'clearly briefly really')."""
        out = []
        while True:
            n, d = divmod(n, len(cls.WORDS))
            out.append(cls.WORDS[d])
            if n == 0:
                break
        return " ".join(out).encode()


@dataclass
class Result:
    tool: str
    mode: str
    url: str
    duration_s: float
    requests: int = 0
    ok: int = 0
    errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    error_kinds: dict[str, int] = field(default_factory=dict)
    rps: float = 0.0
    concurrency: int | None = None
    rate: float | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)
    ttft_ms: dict[str, float] = field(default_factory=dict)
    gap_ms: dict[str, float] = field(default_factory=dict)
    events_per_stream: dict[str, float] = field(default_factory=dict)
    late_sends_ms: dict[str, float] = field(default_factory=dict)
    client_cpu_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        lat = self.latency_ms
        line = (f"{self.tool}/{self.mode}: {self.requests} req in {self.duration_s:.1f}s = {self.rps:,.0f} req/s, "
                f"errors {self.errors} {self.statuses if self.errors else ''}; latency ms p50 {lat.get('p50', '-')} "
                f"p90 {lat.get('p90', '-')} p99 {lat.get('p99', '-')} max {lat.get('max', '-')}")
        if self.ttft_ms:
            line += (f"; TTFT p50 {self.ttft_ms.get('p50')} p99 {self.ttft_ms.get('p99')}; gap p50 {self.gap_ms.get('p50', '-')}"
                     f" p99 {self.gap_ms.get('p99', '-')}; events/stream {self.events_per_stream.get('min', '-')}–"
                     f"{self.events_per_stream.get('max', '-')}")
        return line


class _Recorder:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.ttft: list[float] = []
        self.gaps: list[float] = []
        self.events: list[float] = []
        self.late: list[float] = []
        self.statuses: dict[str, int] = {}
        self.error_kinds: dict[str, int] = {}
        self.ok = 0
        self.errors = 0

    def status(self, code: int) -> None:
        key = str(code)
        self.statuses[key] = self.statuses.get(key, 0) + 1
        if 200 <= code < 300:
            self.ok += 1
        else:
            self.errors += 1

    def fail(self, exc: BaseException) -> None:
        self.errors += 1
        kind = type(exc).__name__
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1


async def _one(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str], stream: bool,
               start: float, rec: _Recorder, timeout: aiohttp.ClientTimeout) -> None:
    """One request; ``start`` is when it *should* have been sent (perf_counter seconds)."""
    perf = time.perf_counter
    try:
        async with session.post(url, data=body, headers=headers, timeout=timeout) as resp:
            if not stream or resp.status != 200:
                await resp.read()
            else:
                first = last = 0.0
                n = 0
                async for line in resp.content:
                    if not line.startswith(b"data:"):
                        continue
                    now = perf()
                    if line.startswith(b"data: [DONE]"):
                        break
                    if n == 0:
                        first = now
                        rec.ttft.append((now - start) * 1000)
                    else:
                        rec.gaps.append((now - last) * 1000)
                    last = now
                    n += 1
                rec.events.append(n)
                if n == 0 or first == 0.0:
                    rec.error_kinds["empty_stream"] = rec.error_kinds.get("empty_stream", 0) + 1
            rec.status(resp.status)
            rec.latencies.append((perf() - start) * 1000)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # connection refused, reset, timeout: counted, never fatal
        rec.fail(exc)


def _session(limit: int) -> aiohttp.ClientSession:
    conn = aiohttp.TCPConnector(limit=limit, limit_per_host=0, keepalive_timeout=60, force_close=False)
    return aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=None), auto_decompress=False)


def _result(tool: str, mode: str, url: str, rec: _Recorder, elapsed: float, cpu: float, **extra: Any) -> Result:
    done = rec.ok + rec.errors
    return Result(
        tool=tool, mode=mode, url=url, duration_s=round(elapsed, 3), requests=done, ok=rec.ok, errors=rec.errors,
        statuses=rec.statuses, error_kinds=rec.error_kinds, rps=round(done / elapsed, 1) if elapsed > 0 else 0.0,
        latency_ms=percentiles(rec.latencies), ttft_ms=percentiles(rec.ttft) if rec.ttft else {},
        gap_ms=percentiles(rec.gaps) if rec.gaps else {}, events_per_stream=percentiles(rec.events) if rec.events else {},
        late_sends_ms=percentiles(rec.late) if rec.late else {}, client_cpu_s=round(cpu, 3), **extra,
    )


async def closed_loop(url: str, body: dict[str, Any] | BodySource, *, concurrency: int = 64, duration: float = 10.0,
                      max_requests: int = 1_000_000, warmup: float = 0.0, headers: dict[str, str] | None = None,
                      stream: bool = False, timeout: float = 30.0) -> Result:
    """``concurrency`` workers back to back for ``duration`` seconds (after ``warmup``), at most ``max_requests``."""
    src = body if isinstance(body, BodySource) else BodySource(body)
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    to = aiohttp.ClientTimeout(total=timeout)
    async with _session(concurrency) as session:
        if warmup > 0:
            await closed_loop_inner(session, url, src, hdrs, concurrency, warmup, max_requests, stream, to, _Recorder())
        rec = _Recorder()
        cpu0, t0 = time.process_time(), time.perf_counter()
        await closed_loop_inner(session, url, src, hdrs, concurrency, duration, max_requests, stream, to, rec)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return _result("python", "closed+stream" if stream else "closed", url, rec, elapsed, cpu, concurrency=concurrency)


async def closed_loop_inner(session: aiohttp.ClientSession, url: str, src: BodySource, hdrs: dict[str, str],
                            concurrency: int, duration: float, max_requests: int, stream: bool,
                            to: aiohttp.ClientTimeout, rec: _Recorder) -> None:
    deadline = time.perf_counter() + duration
    budget = [max_requests]

    async def worker() -> None:
        perf = time.perf_counter
        while budget[0] > 0:
            now = perf()
            if now >= deadline:
                return
            budget[0] -= 1
            await _one(session, url, src.next(), hdrs, stream, now, rec, to)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def open_loop(url: str, body: dict[str, Any] | BodySource, *, rate: float, duration: float = 10.0,
                    max_connections: int = 256, warmup: float = 0.0, headers: dict[str, str] | None = None,
                    stream: bool = False, timeout: float = 30.0, client: str = "auto") -> Result:
    """Requests scheduled at ``rate`` per second; latency counted from each request's intended send time.

    The scheduler wakes up, launches every request whose time has come (a late wake-up launches a burst,
    and those requests are charged for the lateness), and sleeps until the next one. Requests beyond
    ``max_connections`` in flight wait for a connection, and that wait is part of their latency.

    ``client``: ``lean`` (``benchmarks/h1client.py``: prebuilt requests on pooled connections, answers
    parsed by llhttp, no Task per request; what ``auto`` picks for JSON) or ``aiohttp`` (streams: TTFT
    and gaps). Run it with ``run_open`` for sends on time (see there).

    Because a late wake-up is charged to the server, the client's own garbage collector is off while it
    measures (a collection pause of this process would count as server latency; wrk has none). Measured:
    the worst 1-second windows' p99 of the full chain fell from 19–64 ms to 6–22 ms in two A/B pairs.
    """
    if rate <= 0:
        raise ValueError("rate must be > 0")
    if client == "auto":
        client = "aiohttp" if stream or not url.startswith("http://") else "lean"
    src = body if isinstance(body, BodySource) else BodySource(body)
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    if client == "lean":
        return await _open_lean(url, src, hdrs, rate, duration, max_connections, warmup, timeout)
    to = aiohttp.ClientTimeout(total=timeout)
    async with _session(max_connections) as session:
        def launch(rec: _Recorder) -> tuple[Callable[[bytes, float], None], Callable[[], Awaitable[None]]]:
            tasks: set[asyncio.Task[None]] = set()

            def send(data: bytes, intended: float) -> None:
                task = asyncio.ensure_future(_one(session, url, data, hdrs, stream, intended, rec, to))
                tasks.add(task)
                task.add_done_callback(tasks.discard)

            async def finish() -> None:
                if tasks:
                    _, pending = await asyncio.wait(tasks, timeout=timeout)
                    for task in pending:
                        task.cancel()
                    _unfinished(rec, len(pending))
            return send, finish

        if warmup > 0:
            await _open_inner(launch(_Recorder()), src, rate, warmup, _Recorder())
        rec = _Recorder()
        elapsed, cpu = await _measured(_open_inner(launch(rec), src, rate, duration, rec))
    # Throughput of an open loop is the offered rate unless the server fell behind (then elapsed grows).
    return _result("python", "open+stream" if stream else "open", url, rec, elapsed, cpu, rate=rate)


async def _open_lean(url: str, src: BodySource, hdrs: dict[str, str], rate: float, duration: float,
                     max_connections: int, warmup: float, timeout: float) -> Result:
    head = h1client.request_head(url, hdrs)
    perf = time.perf_counter
    sink = _Recorder()

    def done(start: float, status: int) -> None:
        sink.status(status)
        sink.latencies.append((perf() - start) * 1000)

    sender = h1client.Sender(url, max_connections, done, lambda exc: sink.fail(exc))

    def launch(rec: _Recorder) -> tuple[Callable[[bytes, float], None], Callable[[], Awaitable[None]]]:
        def send(data: bytes, intended: float) -> None:
            sender.send(h1client.request(head, data), intended)

        async def finish() -> None:
            _unfinished(rec, await sender.drain(timeout))
        return send, finish

    try:
        if warmup > 0:
            await _open_inner(launch(sink), src, rate, warmup, sink)
        rec = sink = _Recorder()
        elapsed, cpu = await _measured(_open_inner(launch(rec), src, rate, duration, rec))
    finally:
        sender.close()
    return _result("python-lean", "open", url, rec, elapsed, cpu, rate=rate)


def _unfinished(rec: _Recorder, n: int) -> None:
    if n:
        rec.error_kinds["unfinished"] = rec.error_kinds.get("unfinished", 0) + n
        rec.errors += n


async def _measured(coro: Awaitable[None]) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) of ``coro``, with the garbage collector off."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        cpu0, t0 = time.process_time(), time.perf_counter()
        await coro
        return time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        if was_enabled:
            gc.enable()


async def _open_inner(launcher: tuple[Callable[[bytes, float], None], Callable[[], Awaitable[None]]], src: BodySource,
                      rate: float, duration: float, rec: _Recorder) -> None:
    send, finish = launcher
    total = max(1, int(rate * duration))
    interval = 1.0 / rate
    perf = time.perf_counter
    t0 = perf() + 0.005
    i = 0
    while i < total:
        now = perf()
        while i < total and t0 + i * interval <= now:
            intended = t0 + i * interval
            rec.late.append((now - intended) * 1000)
            send(src.next(), intended)
            i += 1
        if i < total:
            await asyncio.sleep(max(0.0, t0 + i * interval - perf()))
    await finish()


def run_open(coro: Awaitable[Result]) -> Result:
    """Run an open loop on an event loop whose sleeps are precise to microseconds.

    asyncio's default loop waits in ``epoll_wait``, whose timeout is whole milliseconds (rounded up), and
    uvloop's timers are milliseconds too: at 2,700 requests/s (one every 370 us) the sends then leave in
    bursts once a millisecond, each charged up to a millisecond of lateness that is the client's, not the
    server's. ``select()`` takes microseconds. Measured against the mock upstream at 2,700/s: lateness
    p50/p99 0.21/1.10 ms with epoll, 0.10/0.18 ms with select, and direct's p50 0.81 → 0.34 ms. The
    open loop keeps far fewer than 1024 sockets, select's limit."""
    with asyncio.Runner(loop_factory=lambda: asyncio.SelectorEventLoop(selectors.SelectSelector())) as runner:
        return runner.run(coro)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------- wrk

_WRK_LUA = r"""
local f = assert(io.open(%(body_path)s, "rb"))
local body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
%(headers)s
local prefix, suffix = nil, nil
local s, e = string.find(body, "{n}", 1, true)
if s then
  prefix = string.sub(body, 1, s - 1)
  suffix = string.sub(body, e + 1)
else
  wrk.body = body
end
local counter = 0
thread_id = 0
local next_id = 0
setup = function(thread)
  next_id = next_id + 1
  thread:set("thread_id", next_id)
end
request = function()
  if prefix then
    counter = counter + 1
    return wrk.format(nil, nil, nil, prefix .. thread_id .. "-" .. counter .. suffix)
  end
  return wrk.format()
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {\"requests\":%%d,\"duration_us\":%%d,\"bytes\":%%d,\"connect\":%%d,\"read\":%%d,\"write\":%%d," ..
    "\"status\":%%d,\"timeout\":%%d,\"p50\":%%d,\"p90\":%%d,\"p99\":%%d,\"p99_9\":%%d,\"max\":%%d,\"min\":%%d,\"mean\":%%f}\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.min, latency.mean))
end
"""


def wrk_available() -> str | None:
    return shutil.which("wrk")


def run_wrk(url: str, body: dict[str, Any], *, connections: int = 64, duration: float = 10.0, threads: int = 1,
            headers: dict[str, str] | None = None, timeout_s: int = 10, taskset: str | None = None) -> Result:
    """Closed-loop throughput with Debian's wrk; returns the same Result shape as the Python client."""
    exe = wrk_available()
    if exe is None:
        raise FileNotFoundError("wrk is not installed (apt-get install -y wrk)")
    with tempfile.TemporaryDirectory(prefix="wrk-") as tmp:
        body_path = os.path.join(tmp, "body.json")
        with open(body_path, "wb") as f:
            f.write(orjson.dumps(body))
        hdr_lines = "\n".join(f'wrk.headers[{_lua_str(k)}] = {_lua_str(v)}' for k, v in (headers or {}).items())
        script = os.path.join(tmp, "post.lua")
        with open(script, "w") as f:
            f.write(_WRK_LUA % {"body_path": _lua_str(body_path), "headers": hdr_lines})
        secs = max(1, int(round(duration)))
        cmd = [exe, "-t", str(threads), "-c", str(connections), "-d", f"{secs}s", "--timeout", f"{timeout_s}s", "-s", script, url]
        if taskset:
            cmd = ["taskset", "-c", taskset, *cmd]
        cpu0 = _children_cpu()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=secs + timeout_s + 30)
        cpu = _children_cpu() - cpu0
    m = re.search(r"^WRKJSON (\{.*\})$", proc.stdout, re.M)
    if proc.returncode != 0 or m is None:
        raise RuntimeError(f"wrk failed (rc {proc.returncode}): {proc.stdout[-800:]} {proc.stderr[-800:]}")
    d = orjson.loads(m.group(1))
    elapsed = d["duration_us"] / 1e6
    n = d["requests"]
    sock_errors = d["connect"] + d["read"] + d["write"] + d["timeout"]
    errors = d["status"] + sock_errors
    lat = {"n": n, **{k: round(d[k] / 1000, 4) for k in ("p50", "p90", "p99", "p99_9", "max", "min")}, "mean": round(d["mean"] / 1000, 4)}
    kinds = {k: d[k] for k in ("connect", "read", "write", "timeout") if d[k]}
    if d["status"]:
        kinds["non_2xx"] = d["status"]
    return Result(tool="wrk", mode="closed", url=url, duration_s=round(elapsed, 3), requests=n, ok=n - d["status"],
                  errors=errors, statuses={"non_2xx": d["status"]} if d["status"] else {}, error_kinds=kinds,
                  rps=round(n / elapsed, 1) if elapsed else 0.0, concurrency=connections, latency_ms=lat, client_cpu_s=round(cpu, 3))


def _lua_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _children_cpu() -> float:
    t = os.times()
    return t.children_user + t.children_system


# --------------------------------------------------------------------------------------------- CLI

def _install_uvloop() -> None:
    try:
        import uvloop
        uvloop.install()
    except ImportError:  # pragma: no cover
        pass


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="WatchLLM benchmark load generator")
    p.add_argument("--url", required=True, help="e.g. http://127.0.0.1:8787/v1/chat/completions")
    p.add_argument("--mode", choices=["closed", "open", "wrk"], default="closed")
    p.add_argument("-c", "--concurrency", type=int, default=64)
    p.add_argument("--rate", type=float, default=500.0, help="open loop: requests per second")
    p.add_argument("-d", "--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("-n", "--max-requests", type=int, default=1_000_000)
    p.add_argument("--model", default="bench")
    p.add_argument("--stream", action="store_true")
    p.add_argument("--unique", action="store_true", help="a different prompt per request (defeats exact caches)")
    p.add_argument("-H", "--header", action="append", default=[], help="'Name: value'")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    args = p.parse_args(argv)
    headers = dict(h.split(":", 1) for h in args.header)
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    prompt = "Request {n}: summarise the benefits of connection pooling in two sentences." if args.unique else None
    body = chat_body(args.model, stream=args.stream, prompt=prompt)
    if args.mode == "wrk":
        res = run_wrk(args.url, body, connections=args.concurrency, duration=args.duration, headers=headers)
    else:
        _install_uvloop()
        if args.mode == "closed":
            res = asyncio.run(closed_loop(args.url, body, concurrency=args.concurrency, duration=args.duration,
                                          max_requests=args.max_requests, warmup=args.warmup, headers=headers, stream=args.stream))
        else:
            res = run_open(open_loop(args.url, body, rate=args.rate, duration=args.duration, warmup=args.warmup,
                                        headers=headers, stream=args.stream))
    if args.json:
        sys.stdout.write(orjson.dumps(res.to_dict(), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(res.summary())
    return 0 if res.requests and res.errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
