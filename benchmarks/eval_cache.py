"""Evaluate the semantic cache: false hits and hit rate, cosine-only vs guarded, across thresholds.

    python -m benchmarks.eval_cache [--qqp PATH] [--qqp-sample 6000] [--out benchmarks/results/cache_eval.md]

Data (read in place, never copied into the repo):
* QQP labelled pairs: ``$WATCHLLM_QQP`` or ``../shared/data/qqp_pairs.jsonl.gz`` (a seeded sample);
* GPTCache paraphrases (positives only): ``$WATCHLLM_GPTCACHE`` or ``../shared/data/gptcache_paraphrases.json``;
* our trap set: ``tests/data/cache_traps.jsonl`` (label 0 = must not hit, 1 = should hit).

Protocol, per pair: the cache holds the answer to ``a``; ``b`` is asked. Cosine-only
hits when cos(last user messages) >= t, exactly as a one-threshold cache keyed on the
last user message does. Guarded hits when, in addition, ``guards.check`` passes on the
questions and ``guards.check_context`` on the earlier turns; guarded+verifier when the
edit verifier (``verifier.verify``) passes too (the middleware's logic, in its order).

QQP is split by a fixed seed into a calibration half (error analysis while building the
verifier) and a report half: every QQP figure in the report is on the report half only.
Embeddings are cached under ``$WATCHLLM_EVAL_CACHE`` (default /tmp/watchllm-eval-emb).
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from plugins.middleware.semantic_cache.config import SemanticCacheConfig  # noqa: E402
from plugins.middleware.semantic_cache.exact import build_request  # noqa: E402
from plugins.middleware.semantic_cache.guards import check, check_context, extract  # noqa: E402
from plugins.middleware.semantic_cache.verifier import verify  # noqa: E402

THRESHOLDS = (0.70, 0.75, 0.80, 0.85, 0.88, 0.90, 0.92, 0.95)
DEFAULT = SemanticCacheConfig()
MODES = ("cosine", "guarded", "verified")
MODE_NAMES = {"cosine": "cosine only", "guarded": "guarded", "verified": "guarded + verifier"}


def _shared(name: str, env: str) -> Path:
    if os.environ.get(env):
        return Path(os.environ[env])
    for base in (ROOT.parent / "shared" / "data", Path("/work/shared/data")):
        if (base / name).exists():
            return base / name
    return ROOT.parent / "shared" / "data" / name


def embed_all(texts: list[str]) -> dict[str, np.ndarray]:
    """Embeddings of unique texts; every text's vector is cached on disk, so a changed set only embeds the new ones."""
    cache_dir = Path(os.environ.get("WATCHLLM_EVAL_CACHE", "/tmp/watchllm-eval-emb"))
    cache_dir.mkdir(parents=True, exist_ok=True)
    known: dict[str, np.ndarray] = {}
    for keys_path in sorted(cache_dir.glob("*.texts.json")):
        vec_path = keys_path.with_name(keys_path.name.replace(".texts.json", ".npy"))
        if vec_path.exists():
            known.update(zip(json.loads(keys_path.read_text()), np.load(vec_path)))
    todo = sorted(set(texts) - known.keys())
    if todo:
        from plugins.middleware.semantic_cache.embedder import SentenceTransformerBackend

        backend = SentenceTransformerBackend()
        t0 = time.perf_counter()
        vecs = np.concatenate([backend.encode(todo[i : i + 64]) for i in range(0, len(todo), 64)])
        print(f"embedded {len(todo)} new texts in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
        key = hashlib.sha1("\x00".join(todo).encode()).hexdigest()[:16]
        np.save(cache_dir / f"{key}.npy", vecs)
        (cache_dir / f"{key}.texts.json").write_text(json.dumps(todo))
        known.update(zip(todo, vecs))
    return {t: known[t] for t in set(texts)}


def _side(value: Any) -> tuple[str, tuple[tuple[str, str], ...]]:
    if isinstance(value, str):
        value = [{"role": "user", "content": value}]
    req = build_request("eval", "chat.completions", {"model": "m", "messages": value})
    assert req is not None
    return req.question, req.context


def load_pairs(qqp_path: Path, sample: int, seed: int) -> dict[str, list[dict[str, Any]]]:
    traps = [json.loads(line) for line in (ROOT / "tests" / "data" / "cache_traps.jsonl").open()]
    sets: dict[str, list[dict[str, Any]]] = {"traps": [], "qqp": [], "gptcache": []}
    for t in traps:
        (qa, ca), (qb, cb) = _side(t["a"]), _side(t["b"])
        sets["traps"].append({"qa": qa, "ca": ca, "qb": qb, "cb": cb, "label": t["label"], "category": t["category"],
                              "split": t.get("split", "dev"), "batch": t.get("batch", 1)})
    with gzip.open(qqp_path, "rt") as f:
        rows = [json.loads(line) for line in f]
    random.Random(seed).shuffle(rows)
    for i, r in enumerate(rows[:sample]):
        half = "calibration" if i % 2 == 0 else "report"  # the shuffle above is seeded: a fixed split
        sets["qqp"].append({"qa": r["text_a"].strip(), "ca": (), "qb": r["text_b"].strip(), "cb": (), "label": r["label"],
                            "category": "qqp", "half": half})
    gp = json.loads(_shared("gptcache_paraphrases.json", "WATCHLLM_GPTCACHE").read_text())
    for r in gp:
        sets["gptcache"].append({"qa": r["origin"].strip(), "ca": (), "qb": r["similar"].strip(), "cb": (), "label": 1, "category": "gptcache"})
    return sets


def score(pairs: list[dict[str, Any]], emb: dict[str, np.ndarray], ratio: float, timings: list[float]) -> None:
    for p in pairs:
        p["cos"] = float(np.dot(emb[p["qa"]], emb[p["qb"]]))
        fa, fb = extract(p["qa"]), extract(p["qb"])
        failed = check(fa, fb)
        if failed is None and not check_context(p["ca"], p["cb"], ratio):
            failed = "context"
        p["guard"] = failed
        t0 = time.perf_counter()
        p["verifier"] = verify(fa, fb)
        if failed is None and p["cos"] >= THRESHOLDS[0]:
            timings.append(time.perf_counter() - t0)


def _hits(p: dict[str, Any], t: float, mode: str) -> bool:
    if p["cos"] < t:
        return False
    if mode == "cosine":
        return True
    return p["guard"] is None and (mode == "guarded" or p["verifier"] is None)


def rates(pairs: list[dict[str, Any]], t: float, mode: str) -> dict[str, float]:
    hit = [_hits(p, t, mode) for p in pairs]
    pos = [h for h, p in zip(hit, pairs) if p["label"] == 1]
    neg = [h for h, p in zip(hit, pairs) if p["label"] == 0]
    tp, fp = sum(pos), sum(neg)
    return {
        "false_hit": fp / len(neg) if neg else float("nan"),
        "hit": tp / len(pos) if pos else float("nan"),
        "precision": tp / (tp + fp) if tp + fp else float("nan"),
        "n_pos": len(pos), "n_neg": len(neg),
    }


def pct(x: float) -> str:
    return "–" if x != x else f"{100 * x:.1f}%"


def report(sets: dict[str, list[dict[str, Any]]], qqp_path: Path, timings: list[float]) -> str:
    traps, gpt = sets["traps"], sets["gptcache"]
    qqp = [p for p in sets["qqp"] if p["half"] == "report"]
    convo = [p for p in traps if p["category"].startswith("conversation")]
    single = [p for p in traps if not p["category"].startswith("conversation")]
    dev = [p for p in traps if p["split"] == "dev"]
    held = [p for p in traps if p["split"] == "holdout"]
    held2 = [p for p in held if p["batch"] >= 2]
    t = DEFAULT.threshold
    default_mode = "verified" if DEFAULT.verifier else "guarded"
    out = ["# Semantic cache evaluation", ""]
    out.append(f"Model all-MiniLM-L6-v2 (sentence-transformers, fp32). Defaults: threshold **{t}**, guards on, "
               f"verifier {'on' if DEFAULT.verifier else 'off'}. "
               f"Traps: {sum(p['label'] == 0 for p in traps)} must-not-hit pairs + {sum(p['label'] == 1 for p in traps)} paraphrases "
               f"(tests/data/cache_traps.jsonl; held-out batches 2-3 = {sum(p['label'] == 0 for p in held2)} traps + "
               f"{sum(p['label'] == 1 for p in held2)} paraphrases, written after the guards were frozen and before the verifier "
               f"was (batch 2) or without looking at its results (batch 3)); "
               f"QQP: a seeded sample of {len(sets['qqp'])} labelled pairs from `{qqp_path.name}`, split by the seed into a "
               f"calibration half (used for error analysis while building the verifier) and a **report half of {len(qqp)} "
               f"pairs: every QQP figure below is on the report half only**; "
               f"GPTCache: {len(gpt)} paraphrase pairs. A pair 'hits' when the cache holding `a` would answer `b`.")
    out.append("")
    out.append("## Across thresholds")
    out.append("")
    out.append("| threshold | mode | trap false-hit (all) | single questions | conversations | dev | held-out | held-out batches 2-3 "
               "| trap paraphrase hit | GPTCache hit | QQP precision | QQP recall |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for th in THRESHOLDS:
        for mode in MODES:
            a, s1, c = rates(traps, th, mode), rates(single, th, mode), rates(convo, th, mode)
            d, h, h2 = rates(dev, th, mode), rates(held, th, mode), rates(held2, th, mode)
            q, g = rates(qqp, th, mode), rates(gpt, th, mode)
            mark = "**" if th == t and mode == default_mode else ""
            out.append(f"| {mark}{th:.2f}{mark} | {mark}{MODE_NAMES[mode]}{mark} | {pct(a['false_hit'])} | {pct(s1['false_hit'])} | "
                       f"{pct(c['false_hit'])} | {pct(d['false_hit'])} | {pct(h['false_hit'])} | {pct(h2['false_hit'])} | "
                       f"{pct(a['hit'])} | {pct(g['hit'])} | {pct(q['precision'])} | {pct(q['hit'])} |")
    out.append("")
    out.append("## QQP (report half): the best precision each mode reaches at a given recall")
    out.append("")
    out.append("Sweeping the threshold from 0.70 to 0.999 in steps of 0.001; the highest precision among thresholds whose recall "
               "is at least the column's.")
    out.append("")
    grid = [round(0.70 + 0.001 * i, 3) for i in range(300)]
    recalls = (0.50, 0.35, 0.25, 0.15, 0.10)
    out.append("| mode | " + " | ".join(f"recall ≥ {int(r * 100)}%" for r in recalls) + " |")
    out.append("|---|" + "---|" * len(recalls))
    for mode in MODES:
        curve = [(rates(qqp, th, mode), th) for th in grid]
        cells = []
        for r in recalls:
            ok = [(x["precision"], th) for x, th in curve if x["hit"] >= r and x["precision"] == x["precision"]]
            cells.append(f"{pct(max(ok)[0])} (t={max(ok)[1]:.3f})" if ok else "–")
        out.append(f"| {MODE_NAMES[mode]} | " + " | ".join(cells) + " |")
    out.append("")
    out.append(f"## Trap false-hit rate by category at {t}")
    out.append("")
    out.append("| category | pairs dev / held-out | cosine only | guarded (dev) | guarded (held-out) | + verifier (dev) | + verifier (held-out) |")
    out.append("|---|---|---|---|---|---|---|")
    for cat in sorted({p["category"] for p in traps}):
        ps = [p for p in traps if p["category"] == cat]
        pd, ph = [p for p in ps if p["split"] == "dev"], [p for p in ps if p["split"] == "holdout"]
        key = "false_hit" if ps[0]["label"] == 0 else "hit"
        label = cat if key == "false_hit" else f"{cat} (hit rate, should be high)"
        cells = [pct(rates(ps, t, "cosine")[key])]
        for mode in ("guarded", "verified"):
            cells += [pct(rates(pd, t, mode)[key]) if pd else "–", pct(rates(ph, t, mode)[key]) if ph else "–"]
        out.append(f"| {label} | {len(pd)} / {len(ph)} | " + " | ".join(cells) + " |")
    out.append("")
    everything = sets["qqp"] + gpt + traps
    lost = Counter(p["guard"] for p in everything if p["label"] == 1 and p["cos"] >= t and p["guard"])
    caught = Counter(p["guard"] for p in sets["qqp"] + traps if p["label"] == 0 and p["cos"] >= t and p["guard"])
    for p in everything:
        if p["cos"] >= t and p["guard"] is None and p["verifier"]:
            (lost if p["label"] == 1 else caught)[f"verifier: {p['verifier']}"] += 1
    out.append(f"## What each guard and verifier check does at {t} (pairs above the threshold, both QQP halves)")
    out.append("")
    out.append("| check | false hits it stops (traps + QQP) | true paraphrases it costs (all sets) |")
    out.append("|---|---|---|")
    for gname in sorted(set(lost) | set(caught)):
        out.append(f"| {gname} | {caught[gname]} | {lost[gname]} |")
    out.append("")
    if timings:
        us = sorted(1e6 * x for x in timings)
        out.append(f"Verifier cost (pure Python, this 2-core machine, over the {len(us)} pairs that reach it at ≥ {THRESHOLDS[0]}): "
                   f"p50 {us[len(us) // 2]:.0f} µs, p99 {us[int(len(us) * 0.99)]:.0f} µs per candidate.")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qqp", type=Path, default=None)
    ap.add_argument("--qqp-sample", type=int, default=int(os.environ.get("WATCHLLM_QQP_SAMPLE", "6000")))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cache_eval.md")
    ap.add_argument("--dump", type=Path, default=None, help="write every scored pair as JSONL (error analysis)")
    args = ap.parse_args(argv)
    qqp_path = args.qqp or _shared("qqp_pairs.jsonl.gz", "WATCHLLM_QQP")
    if not qqp_path.exists():
        print(f"QQP data not found at {qqp_path}; set WATCHLLM_QQP", file=sys.stderr)
        return 2
    sets = load_pairs(qqp_path, args.qqp_sample, args.seed)
    texts = [p[k] for ps in sets.values() for p in ps for k in ("qa", "qb")]
    emb = embed_all(texts)
    timings: list[float] = []
    for ps in sets.values():
        score(ps, emb, DEFAULT.context_min_ratio, timings)
    text = report(sets, qqp_path, timings)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    if args.dump:
        with args.dump.open("w") as f:
            for name, ps in sets.items():
                for p in ps:
                    f.write(json.dumps({"set": name, **{k: v for k, v in p.items()}}, default=list) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
