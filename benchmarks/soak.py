"""Soak: the gateway under steady open-loop load for a bounded number of minutes; RSS must stay flat.

    python -m benchmarks.soak [--minutes 10] [--load 0.5] [--pipeline full] [--window 10]

1. Starts the mock upstream (core 0) and the gateway (core 1) with a pipeline from configs/pipelines.yaml
   (``full`` by default; ``router`` when a middleware of the full chain is not installed yet).
2. Measures the gateway's maximum throughput (closed loop, a few seconds), then offers ``--load`` × that
   rate open loop (unique prompts: every request is a cache miss, a usage row, a counter update).
3. Every ``--window`` seconds records the gateway's RSS (all its processes), its CPU, open-loop latency
   percentiles and errors for that window.

Verdict: the RSS median of the last three windows against the median of the first three after a
warm-up (the first 20% of the run): flat when within ±10%; and below 250 MB (no semantic model).
Writes ``benchmarks/results/soak-<timestamp>.json``/``.md``/``.png`` and ``soak-latest.*``.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from . import loadgen
from .gateway_setup import load_pipelines, middleware_missing, pipeline_entries, seed_key, write_config
from .procs import CORE_GW, CORE_LOAD, GATEWAY_ENV, PYTHON, ROOT, Proc, can_pin, free_port
from .report import RESULTS
from .scenarios import body_for

RSS_LIMIT_MB = 250.0
FLAT_TOLERANCE = 0.10


def verdict(samples: list[dict[str, Any]], warmup_fraction: float = 0.2) -> dict[str, Any]:
    """Flat ± 10%: median RSS of the last 3 windows vs the first 3 after warm-up."""
    if len(samples) < 2:
        return {"flat": None, "reason": "fewer than two windows"}
    t_end = samples[-1]["t_s"]
    steady = [s for s in samples if s["t_s"] >= warmup_fraction * t_end] or samples
    head = [s["rss_mb"] for s in steady[:3]]
    tail = [s["rss_mb"] for s in steady[-3:]]
    base, last = statistics.median(head), statistics.median(tail)
    growth = (last - base) / base if base else 0.0
    peak = max(s["rss_mb"] for s in samples)
    return {"baseline_mb": round(base, 1), "final_mb": round(last, 1), "growth_pct": round(growth * 100, 2),
            "peak_mb": round(peak, 1), "flat": abs(growth) <= FLAT_TOLERANCE, "below_limit": peak < RSS_LIMIT_MB,
            "limit_mb": RSS_LIMIT_MB}


def markdown(meta: dict[str, Any], samples: list[dict[str, Any]], v: dict[str, Any]) -> str:
    lines = [
        f"# WatchLLM soak — {meta['date']}",
        "",
        f"Pipeline: {', '.join(meta['pipeline'])}; {meta['minutes']:g} min at {meta['rate']:,.0f} req/s open loop "
        f"({meta['load'] * 100:.0f}% of the measured maximum {meta['max_rps']:,.0f} req/s); pinning: {meta['pinning']}; gateway log level {meta.get('gateway_log_level', 'WARNING')}.",
        "",
        f"**RSS {v.get('baseline_mb')} MB → {v.get('final_mb')} MB ({v.get('growth_pct')}%), peak {v.get('peak_mb')} MB: "
        f"{'flat' if v.get('flat') else 'NOT flat'} (±{FLAT_TOLERANCE * 100:.0f}%), "
        f"{'below' if v.get('below_limit') else 'ABOVE'} {RSS_LIMIT_MB:.0f} MB.**",
        "",
        "| t (s) | RSS MB | gateway CPU % | req/s | p50 ms | p99 ms | errors | other procs CPU % |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in samples:
        lines.append(f"| {s['t_s']:.0f} | {s['rss_mb']:.1f} | {s['cpu_pct']:.0f} | {s['rps']:,.0f} | {s['p50_ms']} | {s['p99_ms']} | "
                     f"{s['errors']} | {s['foreign_cpu_pct']:.0f} |")
    return "\n".join(lines) + "\n"


def plot(samples: list[dict[str, Any]], path: Path, title: str) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    t = [s["t_s"] for s in samples]
    fig, ax = plt.subplots(figsize=(8, 4), constrained_layout=True)
    ax.plot(t, [s["rss_mb"] for s in samples], marker="o", label="gateway RSS (MB)")
    ax.set_xlabel("seconds")
    ax.set_ylabel("RSS MB")
    ax.set_ylim(bottom=0)
    ax2 = ax.twinx()
    ax2.plot(t, [s["p99_ms"] for s in samples], color="tab:red", alpha=0.5, label="p99 ms")
    ax2.set_ylabel("p99 latency ms")
    ax.set_title(title)
    fig.legend(loc="lower right")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="WatchLLM soak: RSS over time under steady load")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--load", type=float, default=0.5, help="fraction of the measured maximum throughput")
    p.add_argument("--rate", type=float, default=None, help="fixed rate instead of --load × max")
    p.add_argument("--pipeline", default="full")
    p.add_argument("--window", type=float, default=10.0, help="seconds per sample")
    p.add_argument("--no-pin", action="store_true")
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    if args.minutes <= 0 or args.minutes > 120:
        p.error("--minutes must be in (0, 120]")

    pin = not args.no_pin and can_pin()
    if pin:
        os.sched_setaffinity(0, {int(CORE_LOAD)})
    try:
        import uvloop
        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    spec = load_pipelines()
    name = args.pipeline
    entries = pipeline_entries(spec, name)
    missing = middleware_missing(entries)
    if missing:
        print(f"pipeline {name!r} needs {', '.join(missing)}; soaking the router-only pipeline instead", flush=True)
        name, entries = "router", pipeline_entries(spec, "router")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log_dir = Path(tempfile.mkdtemp(prefix=f"soak-logs-{stamp}-"))
    workdir = Path(tempfile.mkdtemp(prefix="soak-gw-"))
    mock_port, port = free_port(), free_port()
    mock = Proc("mock_upstream", [PYTHON, "-m", "benchmarks.mock_upstream", "--port", str(mock_port)],
                cpus=CORE_LOAD if pin else None, log_dir=log_dir).start()
    gw: Proc | None = None
    try:
        mock.wait_http(f"http://127.0.0.1:{mock_port}/health")
        cfg = write_config(workdir, port=port, upstream_port=mock_port, entries=entries, workers=1, state_url="memory://")
        headers: dict[str, str] = {}
        if any("auth" in e for e in entries):
            headers["Authorization"] = f"Bearer {seed_key(workdir)}"
        exe = ROOT / ".venv/bin/watchllm"
        cmd = [str(exe)] if exe.exists() else [PYTHON, "-m", "gateway.cli"]
        gw = Proc("gateway", [*cmd, "serve", "--config", str(cfg)], cpus=CORE_GW if pin else None, log_dir=log_dir, cwd=workdir,
                  env=GATEWAY_ENV).start()
        gw.wait_http(f"http://127.0.0.1:{port}/ready", timeout=90)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        body = body_for("unique")
        asyncio.run(loadgen.closed_loop(url, body, concurrency=8, duration=1.0, headers=headers))
        if loadgen.wrk_available():
            mx = loadgen.run_wrk(url, loadgen.chat_body(prompt="Request {n}: soak calibration."), connections=64, duration=4,
                                 headers=headers, taskset=CORE_LOAD if pin else None)
        else:
            mx = asyncio.run(loadgen.closed_loop(url, body, concurrency=64, duration=4, headers=headers))
        rate = args.rate or max(10.0, round(mx.rps * args.load, 1))
        print(f"soak: pipeline {entries and [next(iter(e)) for e in entries]}, max {mx.rps:,.0f} req/s → {rate:,.0f} req/s for "
              f"{args.minutes:g} min, a sample every {args.window:g} s", flush=True)
        import psutil

        samples: list[dict[str, Any]] = []
        t0 = time.monotonic()
        end = t0 + args.minutes * 60
        while time.monotonic() < end - 0.5:
            window = min(args.window, end - time.monotonic())
            cpu0, w0 = gw.cpu_s(), time.monotonic()
            ct0 = psutil.cpu_times()
            busy0 = ct0.user + ct0.system + ct0.nice
            ours0 = mock.cpu_s() + gw.cpu_s() + sum(os.times()[:4])
            res = loadgen.run_open(loadgen.open_loop(url, body, rate=rate, duration=window, headers=headers, timeout=10))
            wall = time.monotonic() - w0
            ct1 = psutil.cpu_times()
            busy = ct1.user + ct1.system + ct1.nice - busy0
            ours = mock.cpu_s() + gw.cpu_s() + sum(os.times()[:4]) - ours0
            s = {"t_s": round(time.monotonic() - t0, 1), "rss_mb": round(gw.rss_mb(), 2),
                 "cpu_pct": round((gw.cpu_s() - cpu0) / wall * 100, 1), "rps": res.rps, "requests": res.requests,
                 "errors": res.errors, "p50_ms": res.latency_ms.get("p50"), "p99_ms": res.latency_ms.get("p99"),
                 "foreign_cpu_pct": round(max(0.0, busy - ours) / (wall * (os.cpu_count() or 1)) * 100, 1)}
            samples.append(s)
            print(f"  t={s['t_s']:6.0f}s RSS {s['rss_mb']:7.1f} MB  CPU {s['cpu_pct']:5.1f}%  {s['rps']:7,.0f} req/s  "
                  f"p50 {s['p50_ms']} p99 {s['p99_ms']} ms  errors {s['errors']}", flush=True)
        v = verdict(samples)
        meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "pipeline": [next(iter(e)) for e in entries], "minutes": args.minutes,
                "load": args.load, "rate": rate, "max_rps": mx.rps, "window_s": args.window,
                "pinning": f"gateway taskset -c {CORE_GW}, load+mock taskset -c {CORE_LOAD}" if pin else "off",
                "gateway_log_level": GATEWAY_ENV["LOG_LEVEL"]}
        doc = {"meta": meta, "verdict": v, "samples": samples}
        jpath = out_dir / f"soak-{stamp}.json"
        jpath.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
        md = markdown(meta, samples, v)
        png = out_dir / f"soak-{stamp}.png"
        if plot(samples, png, f"soak {meta['date'][:16]}: RSS over time"):
            shutil.copyfile(png, out_dir / "soak-latest.png")
            md += "\n![RSS over time](soak-latest.png)\n"
        (out_dir / f"soak-{stamp}.md").write_text(md)
        (out_dir / "soak-latest.md").write_text(md)
        shutil.copyfile(jpath, out_dir / "soak-latest.json")
        print(md)
        return 0 if v.get("flat") and v.get("below_limit") else 1
    finally:
        if gw is not None:
            gw.stop()
        mock.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
