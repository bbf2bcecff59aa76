"""Turn one benchmark run into ratios, a Markdown report, a JSON file and a PNG plot.

Derived figures (all from the same run):

* ``x_passthrough``: closed-loop req/s ÷ the pass-through's req/s. For bracketed scenarios the
  denominator is the mean of the pass-through measured right before and right after.
* ``cpu_capacity_x``: pass-through CPU µs/request ÷ this scenario's CPU µs/request, i.e. the throughput
  ratio the two would have on a dedicated core; steadier than req/s when other work shares the machine.
* ``x_passthrough_interleaved`` / ``cpu_capacity_interleaved`` (bracketed scenarios): the median over
  short runs alternating with the pass-through (see ``Bench.interleave``); on a shared machine whose
  speed drifts by ±20% over tens of seconds, the steadiest of these figures.
* ``added_p50_ms`` / ``added_p99_ms``: open-loop percentiles minus the direct (upstream alone)
  percentiles at the same rate.
* middleware share: CPU µs/request of the full chain minus that of the full chain without it.
"""
from __future__ import annotations

import shutil
import statistics
from pathlib import Path
from typing import Any

import orjson

__all__ = ["RESULTS", "derive", "markdown", "plot", "write_outputs"]

RESULTS = Path(__file__).resolve().parent / "results"


def _get(row: dict[str, Any] | None, *path: str) -> Any:
    cur: Any = row
    for key in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(key)
    return cur


def _fmt(v: Any, nd: int = 2, suffix: str = "") -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if abs(v) >= 100:
            return f"{v:,.0f}{suffix}"
        return f"{v:.{nd}f}{suffix}"
    if isinstance(v, int):
        return f"{v:,}{suffix}"
    return str(v)


def derive(meta: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    by = {r["name"]: r for r in rows}
    ok = {n: r for n, r in by.items() if r.get("status") == "ok"}
    pt = ok.get("passthrough")
    samples = [s for s in meta.get("passthrough_rps_samples", []) if s]
    if _get(pt, "closed", "rps"):
        samples = [pt["closed"]["rps"], *samples]
    pt_rps = statistics.median(samples) if samples else None
    pt_cpu = _get(pt, "closed", "server_cpu_us_per_req")
    direct = ok.get("direct")

    derived: dict[str, Any] = {"passthrough_rps_median": pt_rps, "passthrough_cpu_us_per_req": pt_cpu, "scenarios": {}}
    for name, r in ok.items():
        d: dict[str, Any] = {}
        rps = _get(r, "closed", "rps")
        if rps:
            if r.get("passthrough_before") and r.get("passthrough_after"):
                ref = (r["passthrough_before"] + r["passthrough_after"]) / 2
                d["passthrough_ref"] = "bracketed"
            else:
                ref = pt_rps
                d["passthrough_ref"] = "run median"
            d["x_passthrough"] = round(rps / ref, 3) if ref else None
            cpu = _get(r, "closed", "server_cpu_us_per_req")
            if cpu and pt_cpu:
                d["cpu_capacity_x"] = round(pt_cpu / cpu, 3)
            if _get(r, "interleaved", "rps_ratio_median"):
                d["x_passthrough_interleaved"] = r["interleaved"]["rps_ratio_median"]
                d["cpu_capacity_interleaved"] = r["interleaved"]["cpu_ratio_median"]
                d["interleaved_rounds"] = len(r["interleaved"]["rps_ratios"])
        if _get(r, "open", "latency_ms", "p50") is not None and _get(direct, "open", "latency_ms", "p50") is not None:
            same_rate = _get(r, "open", "rate") == _get(direct, "open", "rate")
            for p in ("p50", "p90", "p99"):
                d[f"added_{p}_ms"] = round(r["open"]["latency_ms"][p] - direct["open"]["latency_ms"][p], 3)
            d["added_same_rate"] = same_rate
        if _get(r, "open_interleaved", "added_p99_median") is not None:
            d["added_p50_ms_interleaved"] = r["open_interleaved"]["added_p50_median"]
            d["added_p99_ms_interleaved"] = r["open_interleaved"]["added_p99_median"]
            d["latency_rounds"] = len(r["open_interleaved"]["added_p99_ms"])
        if _get(r, "stream", "ttft_ms", "p50") is not None and _get(direct, "stream", "ttft_ms", "p50") is not None:
            for p in ("p50", "p99"):
                d[f"ttft_added_{p}_ms"] = round(r["stream"]["ttft_ms"][p] - direct["stream"]["ttft_ms"][p], 3)
                if _get(r, "stream", "gap_ms", p) is not None and _get(direct, "stream", "gap_ms", p) is not None:
                    d[f"gap_added_{p}_ms"] = round(r["stream"]["gap_ms"][p] - direct["stream"]["gap_ms"][p], 3)
            d["events_per_stream"] = [r["stream"]["events_per_stream"].get("min"), r["stream"]["events_per_stream"].get("max")]
            d["events_direct"] = [direct["stream"]["events_per_stream"].get("min"), direct["stream"]["events_per_stream"].get("max")]
        derived["scenarios"][name] = d

    # The shares' reference is the full chain measured like the full_minus_* rows (unbracketed, 10 s, in the
    # same stretch of the run): full_miss itself runs first, bracketed by the pass-through on the same core,
    # and its single closed run came out 20-28% costlier than its own interleaved rounds on the 2026-12-04 box.
    share_ref = "full_ref" if "full_ref" in ok else "full_miss"
    full = ok.get(share_ref)
    shares = {}
    for name, r in ok.items():
        # full_minus_X: X's share is full − this; full_plus_X (something the full chain leaves out): this − full
        sign = 1 if name.startswith("full_minus_") else -1 if name.startswith("full_plus_") else 0
        if not sign or not full:
            continue
        mw = name.removeprefix("full_minus_").removeprefix("full_plus_")
        if _get(r, "closed", "errors") or _get(full, "closed", "errors"):
            shares[mw] = {"cpu_us_per_req": None, "wall_us_per_req": None, "note": "errors in the run: not comparable"}
            continue
        cpu_full, cpu_other = _get(full, "closed", "server_cpu_us_per_req"), _get(r, "closed", "server_cpu_us_per_req")
        rps_full, rps_other = _get(full, "closed", "rps"), _get(r, "closed", "rps")
        shares[mw] = {
            "cpu_us_per_req": round(sign * (cpu_full - cpu_other), 1) if cpu_full and cpu_other else None,
            "wall_us_per_req": round(sign * (1e6 / rps_full - 1e6 / rps_other), 1) if rps_full and rps_other else None,
        }
    derived["middleware_share"] = shares
    derived["middleware_share_ref"] = share_ref
    lean = _get(ok.get("passthrough_lean"), "closed", "rps")
    if lean:  # the second reference: same HTTP plumbing as the gateway, no chain (benchmarks/passthrough_lean.py)
        for name, d in derived["scenarios"].items():
            rps = _get(ok[name], "closed", "rps")
            if rps and name not in ("direct", "passthrough", "passthrough_lean"):
                d["x_lean_passthrough"] = round(rps / lean, 3)
    w1, w2 = _get(ok.get("workers_1"), "closed", "rps"), _get(ok.get("workers_2"), "closed", "rps")
    derived["workers_2_over_1"] = round(w2 / w1, 3) if w1 and w2 else None
    derived["targets"] = targets(derived, ok)
    return derived


def targets(derived: dict[str, Any], ok: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    s = derived["scenarios"]
    out: list[dict[str, Any]] = []

    def add(name: str, value: Any, goal: str, passed: bool | None) -> None:
        out.append({"target": name, "measured": value, "goal": goal,
                    "result": "n/a" if passed is None else ("pass" if passed else "MISS")})

    fm = s.get("full_miss", {})
    v = fm.get("x_passthrough")
    add("full chain (miss) throughput vs pass-through", v, "≥ 0.70", None if v is None else v >= 0.70)
    v = fm.get("cpu_capacity_x")
    add("full chain (miss) CPU capacity vs pass-through", v, "≥ 0.70 (noise-robust cross-check)", None if v is None else v >= 0.70)
    v = fm.get("x_passthrough_interleaved")
    add(f"full chain (miss) throughput vs pass-through, interleaved median of {fm.get('interleaved_rounds')} rounds", v,
        "≥ 0.70", None if v is None else v >= 0.70)
    v = fm.get("added_p50_ms")
    add("full chain added p50 vs direct at ½ max", v, "≤ 1 ms", None if v is None else v <= 1.0)
    v = fm.get("added_p99_ms")
    add("full chain added p99 vs direct at ½ max", v, "≤ 5 ms", None if v is None else v <= 5.0)
    if fm.get("latency_rounds"):
        n = fm["latency_rounds"]
        v = fm.get("added_p50_ms_interleaved")
        add(f"full chain added p50 vs direct at ½ max, interleaved median of {n} rounds", v, "≤ 1 ms", None if v is None else v <= 1.0)
        v = fm.get("added_p99_ms_interleaved")
        add(f"full chain added p99 vs direct at ½ max, interleaved median of {n} rounds", v, "≤ 5 ms", None if v is None else v <= 5.0)
    v = s.get("exact_hit", {}).get("x_passthrough")
    add("exact cache hit throughput vs pass-through", v, "≥ 1.5", None if v is None else v >= 1.5)
    v = s.get("exact_hit", {}).get("cpu_capacity_x")
    add("exact cache hit CPU capacity vs pass-through", v, "≥ 1.5 (cross-check)", None if v is None else v >= 1.5)
    v = s.get("exact_hit", {}).get("x_passthrough_interleaved")
    add(f"exact cache hit throughput vs pass-through, interleaved median of {s.get('exact_hit', {}).get('interleaved_rounds')} rounds",
        v, "≥ 1.5", None if v is None else v >= 1.5)
    for name, label in (("full_miss", "full chain (miss)"), ("exact_hit", "exact cache hit")):
        v = s.get(name, {}).get("x_lean_passthrough")
        if v is not None:
            add(f"{label} throughput vs the lean pass-through (same HTTP plumbing, no chain; information)", v, "–", None)
    for name in ("router", "full_miss"):
        v = s.get(name, {}).get("ttft_added_p50_ms")
        add(f"streaming TTFT added p50 ({name})", v, "≤ 2 ms", None if v is None else v <= 2.0)
        ev, evd = s.get(name, {}).get("events_per_stream"), s.get(name, {}).get("events_direct")
        if ev and evd:
            add(f"streaming chunks held back ({name})", f"{ev[0]}–{ev[1]} events vs {evd[0]}–{evd[1]} direct",
                "none held back", ev[0] >= evd[0])
    return out


def _open_client(rows: list[dict[str, Any]]) -> str:
    """Which client ran the open loops, and what it cost (the full chain's open run): it shares a core
    with the mock upstream, so what it spends there would show in every latency it measures."""
    r = next((row.get("open") for row in rows if row.get("name") == "full_miss" and row.get("open")), None)
    if not r or not r.get("requests"):
        return "Python client"
    kind = "lean Python client (llhttp, select loop)" if r.get("tool") == "python-lean" else "Python client (aiohttp)"
    late = (r.get("late_sends_ms") or {}).get("p99")
    return (f"{kind}, {r['client_cpu_s'] / r['requests'] * 1e6:.0f} µs of client CPU per request, sends late p99 "
            f"{_fmt(late, 3)} ms")


def markdown(meta: dict[str, Any], rows: list[dict[str, Any]], derived: dict[str, Any]) -> str:
    m = meta["machine"]
    lines = [
        f"# WatchLLM benchmark — {meta['date']} ({meta['mode']}, {meta['elapsed_s']:.0f} s)",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, Linux {m['kernel']}, Python {m['python']}, "
        f"aiohttp {m['aiohttp']}, uvloop {m['uvloop']}; load average at start {', '.join(f'{x:.2f}' for x in m['load_avg_at_start'])}.",
        f"Pinning: {'server under test (gateway or pass-through) `' + meta['pinning']['server_under_test'] + '`; load generator, mock upstream and redis `' + meta['pinning']['load_mock_redis'] + '`' if meta['pinning']['enabled'] else 'off'}"
        " (the workers scenarios are unpinned: all cores). Gateway log level: "
        f"{meta.get('gateway_log_level', 'WARNING')} (the default, INFO, writes one JSON line per request; the "
        "`request_log` share below is its cost).",
        f"Closed loop: `{meta['calibration'].get('closed_loop_tool', '?')}`, {meta['durations']['concurrency']} connections, "
        f"{meta['durations']['closed']:g} s. Open loop: {_open_client(rows)}, latency from the intended send time (coordinated-omission "
        f"corrected), {meta['durations']['open']:g} s at {_fmt(meta['open_loop_rate'])} req/s (half the full chain's maximum). "
        f"Streams: {meta['durations']['stream_rate']:g} streams/s, {meta['durations']['chunks']} chunks {meta['durations']['chunk_delay_ms']:g} ms apart.",
        "",
    ]
    cal = meta.get("calibration") or {}
    if cal:
        lines.append(f"Load generator capacity against the mock upstream alone: Python client "
                     f"{_fmt(_get(cal, 'python_closed', 'rps'))} req/s, wrk {_fmt(_get(cal, 'wrk_closed', 'rps'))} req/s "
                     f"(pass-through median in this run: {_fmt(derived['passthrough_rps_median'])} req/s).")
        lines.append("")

    lines += ["## Targets", "", "| target | measured | goal | result |", "|---|---|---|---|"]
    for t in derived["targets"]:
        lines.append(f"| {t['target']} | {_fmt(t['measured'], 3)} | {t['goal']} | {t['result']} |")
    lines.append("")

    lines += ["## Throughput and latency", "",
              "| scenario | pipeline | req/s | × pass-through | CPU µs/req | CPU capacity × pt | upstream calls/req | "
              "open p50 / p90 / p99 ms | added p50 / p99 ms vs direct | errors | other procs CPU % |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        name = r["name"]
        if r.get("status") != "ok":
            lines.append(f"| {name} | {', '.join(r.get('pipeline') or []) or '–'} | {r.get('status')}: {r.get('reason', '')[:160]} |"
                         " | | | | | | | |")
            continue
        d = derived["scenarios"].get(name, {})
        c, o = r.get("closed") or {}, r.get("open") or {}
        pipe = ", ".join(r.get("pipeline") or []) or r.get("target", "")
        if r.get("workers", 1) > 1:
            pipe += f" ×{r['workers']} workers"
        if r.get("state") == "redis":
            pipe += " (redis state)"
        lat = o.get("latency_ms") or {}
        open_s = f"{_fmt(lat.get('p50'))} / {_fmt(lat.get('p90'))} / {_fmt(lat.get('p99'))}" if lat else "–"
        if o and o.get("rate") != meta.get("open_loop_rate"):
            open_s += f" @ {_fmt(o.get('rate'))}/s"
        added = f"{_fmt(d.get('added_p50_ms'))} / {_fmt(d.get('added_p99_ms'))}" if "added_p50_ms" in d else "–"
        errors = (c.get("errors") or 0) + (o.get("errors") or 0)
        lines.append(f"| {name} | {pipe} | {_fmt(c.get('rps'))} | {_fmt(d.get('x_passthrough'), 3)} | "
                     f"{_fmt(c.get('server_cpu_us_per_req'))} | {_fmt(d.get('cpu_capacity_x'), 3)} | {_fmt(c.get('upstream_calls_per_req'), 3)} | "
                     f"{open_s} | {added} | {errors} | {_fmt(c.get('foreign_cpu_pct'), 0)} / {_fmt(o.get('foreign_cpu_pct'), 0)} |")
    lines.append("")

    stream_rows = [r for r in rows if r.get("status") == "ok" and r.get("stream")]
    if stream_rows:
        lines += ["## Streaming", "", "| scenario | TTFT p50 / p99 ms | TTFT added p50 / p99 | gap p50 / p99 ms | gap added p50 / p99 | events/stream | errors |",
                  "|---|---|---|---|---|---|---|"]
        for r in stream_rows:
            s, d = r["stream"], derived["scenarios"].get(r["name"], {})
            ev = s.get("events_per_stream") or {}
            lines.append(f"| {r['name']} | {_fmt(s['ttft_ms'].get('p50'))} / {_fmt(s['ttft_ms'].get('p99'))} | "
                         f"{_fmt(d.get('ttft_added_p50_ms'))} / {_fmt(d.get('ttft_added_p99_ms'))} | "
                         f"{_fmt(s['gap_ms'].get('p50'))} / {_fmt(s['gap_ms'].get('p99'))} | "
                         f"{_fmt(d.get('gap_added_p50_ms'))} / {_fmt(d.get('gap_added_p99_ms'))} | "
                         f"{_fmt(ev.get('min'))}–{_fmt(ev.get('max'))} | {s.get('errors')} |")
        lines.append("")

    if derived["middleware_share"]:
        lines += ["## Each middleware's share (full chain minus the chain without it)", "",
                  f"Reference: `{derived['middleware_share_ref']}`, the full chain measured the same way as the rows without one middleware.", "",
                  "| middleware | gateway CPU µs/request | wall µs/request at saturation |", "|---|---|---|"]
        for mw, v in derived["middleware_share"].items():
            lines.append(f"| {mw} | {_fmt(v['cpu_us_per_req'], 1)} | {_fmt(v['wall_us_per_req'], 1)} |")
        lines.append("")
    if derived.get("workers_2_over_1"):
        lines += [f"Workers: 2 workers give {derived['workers_2_over_1']:.2f}× the throughput of 1 (both unpinned, 256 "
                  "connections; the load generator and the mock upstream stay on core 0, so on a 2-core box the second "
                  "worker gets what they leave of it).", ""]
    mem = [(r["name"], r.get("rss_mb_start"), r.get("rss_mb_end")) for r in rows if r.get("rss_mb_end")]
    if mem:
        lines += ["## Gateway memory (RSS, MB, all worker processes)", "", "| scenario | after start | after the run |", "|---|---|---|"]
        lines += [f"| {n} | {_fmt(a, 1)} | {_fmt(b, 1)} |" for n, a, b in mem]
        lines.append("")
    skipped = [r for r in rows if r.get("status") != "ok"]
    if skipped:
        lines += ["## Not measured", ""]
        lines += [f"- **{r['name']}** ({r.get('status')}): {r.get('reason')}" for r in skipped]
        lines.append("")
    lines += ["Absolute numbers depend on what else runs on the machine; compare the ratios, which were measured in one run.", ""]
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], derived: dict[str, Any], path: Path, title: str) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    ok = [r for r in rows if r.get("status") == "ok" and r.get("closed")]
    if not ok:
        return False
    names = [r["name"] for r in ok]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(max(8, 0.7 * len(names) + 3), 8.5), constrained_layout=True)
    rps = [r["closed"]["rps"] for r in ok]
    colors = ["#888888" if r["name"] in ("direct", "passthrough") else "#3b7dd8" for r in ok]
    bars = ax1.bar(names, rps, color=colors)
    for b, r in zip(bars, ok):
        x = derived["scenarios"].get(r["name"], {}).get("x_passthrough")
        if x:
            ax1.annotate(f"{x:.2f}×", (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom", fontsize=8)
    ax1.set_ylabel("req/s (closed loop)")
    ax1.set_title(f"{title}: throughput (label = × pass-through)")
    ax1.tick_params(axis="x", rotation=35)
    lat_rows = [r for r in ok if r.get("open")]
    if lat_rows:
        import numpy as np
        x = np.arange(len(lat_rows))
        w = 0.27
        for i, p in enumerate(("p50", "p90", "p99")):
            ax2.bar(x + (i - 1) * w, [r["open"]["latency_ms"].get(p, 0) for r in lat_rows], w, label=p)
        ax2.set_xticks(x, [r["name"] for r in lat_rows], rotation=35)
        ax2.set_yscale("log")
        ax2.set_ylabel("latency ms (open loop, log)")
        ax2.set_title("latency percentiles at the common open-loop rate (coordinated-omission corrected)")
        ax2.legend()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_outputs(meta: dict[str, Any], rows: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    derived = derive(meta, rows)
    doc = {"meta": meta, "derived": derived, "scenarios": rows}
    stamp = meta["stamp"]
    jpath, mpath, ppath = out_dir / f"{stamp}.json", out_dir / f"{stamp}.md", out_dir / f"{stamp}.png"
    jpath.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    md = markdown(meta, rows, derived)
    has_plot = plot(rows, derived, ppath, f"WatchLLM {meta['date'][:10]}")
    if has_plot:
        md += f"\n![latency and throughput by scenario]({ppath.name})\n"
    mpath.write_text(md)
    paths = [jpath, mpath]
    shutil.copyfile(jpath, out_dir / "latest.json")
    (out_dir / "latest.md").write_text(md.replace(f"]({ppath.name})", "](latest.png)"))
    if has_plot:
        shutil.copyfile(ppath, out_dir / "latest.png")
        paths.append(ppath)
    return paths
