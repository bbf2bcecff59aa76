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
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .gateway_setup import load_pipelines
from .procs import CORE_GW, CORE_LOAD, LOG_LEVEL, can_pin
from .report import RESULTS, write_outputs
from .runner import Bench, _print_open, machine
from .scenarios import Durations, body_for, scenarios, select


def main(argv: list[str] | None = None) -> int:
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
            "passthrough_rps_samples": bench.passthrough_rps, "log_dir": str(log_dir), "gateway_log_level": LOG_LEVEL}
    paths = write_outputs(meta, bench.results, out_dir)
    print(f"done in {elapsed:.0f}s: " + ", ".join(str(p) for p in paths), flush=True)
    print((out_dir / "latest.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
