"""Evaluate the semantic cache: false hits and hit rate, cosine-only vs guarded, across thresholds.

    python -m benchmarks.eval_cache [--qqp PATH] [--qqp-sample 6000] [--out benchmarks/results/cache_eval.md]

Data (read in place, never copied into the repo):
* QQP labelled pairs: ``$WATCHLLM_QQP`` or ``../shared/data/qqp_pairs.jsonl.gz`` (a seeded sample);
* GPTCache paraphrases (positives only): ``$WATCHLLM_GPTCACHE`` or ``../shared/data/gptcache_paraphrases.json``;
* our trap set: ``tests/data/cache_traps.jsonl`` (label 0 = must not hit, 1 = should hit).

Protocol, per pair: the cache holds the answer to ``a``; ``b`` is asked. Cosine-only
hits when cos(last user messages) >= t, exactly as a one-threshold cache keyed on the
last user message does. Guarded hits when, in addition, ``guards.check`` passes on the
questions and ``guards.check_context`` on the earlier turns (the middleware's logic).
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

THRESHOLDS = (0.70, 0.75, 0.80, 0.85, 0.88, 0.90, 0.92, 0.95)
DEFAULT = SemanticCacheConfig()


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
                              "split": t.get("split", "dev")})
    with gzip.open(qqp_path, "rt") as f:
        rows = [json.loads(line) for line in f]
    random.Random(seed).shuffle(rows)
    for r in rows[:sample]:
        sets["qqp"].append({"qa": r["text_a"].strip(), "ca": (), "qb": r["text_b"].strip(), "cb": (), "label": r["label"], "category": "qqp"})
    gp = json.loads(_shared("gptcache_paraphrases.json", "WATCHLLM_GPTCACHE").read_text())
    for r in gp:
        sets["gptcache"].append({"qa": r["origin"].strip(), "ca": (), "qb": r["similar"].strip(), "cb": (), "label": 1, "category": "gptcache"})
    return sets


def score(pairs: list[dict[str, Any]], emb: dict[str, np.ndarray], ratio: float) -> None:
    for p in pairs:
        p["cos"] = float(np.dot(emb[p["qa"]], emb[p["qb"]]))
        failed = check(extract(p["qa"]), extract(p["qb"]))
        if failed is None and not check_context(p["ca"], p["cb"], ratio):
            failed = "context"
        p["guard"] = failed


def rates(pairs: list[dict[str, Any]], t: float, guarded: bool) -> dict[str, float]:
    hit = [p["cos"] >= t and (not guarded or p["guard"] is None) for p in pairs]
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


def report(sets: dict[str, list[dict[str, Any]]], qqp_path: Path) -> str:
    traps, qqp, gpt = sets["traps"], sets["qqp"], sets["gptcache"]
    convo = [p for p in traps if p["category"].startswith("conversation")]
    dev = [p for p in traps if p["split"] == "dev"]
    held = [p for p in traps if p["split"] == "holdout"]
    out = ["# Semantic cache evaluation", ""]
    out.append(f"Model all-MiniLM-L6-v2 (sentence-transformers, fp32). Default threshold **{DEFAULT.threshold}**. "
               f"Traps: {sum(p['label'] == 0 for p in traps)} must-not-hit pairs + {sum(p['label'] == 1 for p in traps)} paraphrases "
               f"(tests/data/cache_traps.jsonl); QQP: a seeded sample of {len(qqp)} labelled pairs from `{qqp_path.name}`; "
               f"GPTCache: {len(gpt)} paraphrase pairs. A pair 'hits' when the cache holding `a` would answer `b`.")
    out.append("")
    out.append("## Across thresholds")
    out.append("")
    out.append("| threshold | mode | trap false-hit (all) | dev | held-out | conversations | trap paraphrase hit | GPTCache hit | QQP precision | QQP recall |")
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    for t in THRESHOLDS:
        for guarded in (False, True):
            a, d, h, c = rates(traps, t, guarded), rates(dev, t, guarded), rates(held, t, guarded), rates(convo, t, guarded)
            q, g = rates(qqp, t, guarded), rates(gpt, t, guarded)
            mark = "**" if t == DEFAULT.threshold else ""
            out.append(f"| {mark}{t:.2f}{mark} | {'guarded' if guarded else 'cosine only'} | {pct(a['false_hit'])} | {pct(d['false_hit'])} | {pct(h['false_hit'])} | "
                       f"{pct(c['false_hit'])} | {pct(a['hit'])} | {pct(g['hit'])} | {pct(q['precision'])} | {pct(q['hit'])} |")
    out.append("")
    t = DEFAULT.threshold
    out.append(f"## Trap false-hit rate by category at {t}")
    out.append("")
    out.append("| category | pairs dev / held-out | cosine only | guarded (dev) | guarded (held-out) |")
    out.append("|---|---|---|---|---|")
    for cat in sorted({p["category"] for p in traps}):
        ps = [p for p in traps if p["category"] == cat]
        pd, ph = [p for p in ps if p["split"] == "dev"], [p for p in ps if p["split"] == "holdout"]
        key = "false_hit" if ps[0]["label"] == 0 else "hit"
        label = cat if key == "false_hit" else f"{cat} (hit rate, should be high)"
        out.append(f"| {label} | {len(pd)} / {len(ph)} | {pct(rates(ps, t, False)[key])} | {pct(rates(pd, t, True)[key])} | "
                   f"{pct(rates(ph, t, True)[key]) if ph else '–'} |")
    out.append("")
    lost = Counter(p["guard"] for p in qqp + gpt + traps if p["label"] == 1 and p["cos"] >= t and p["guard"])
    caught = Counter(p["guard"] for p in qqp + traps if p["label"] == 0 and p["cos"] >= t and p["guard"])
    out.append(f"## What each guard does at {t} (pairs above the threshold)")
    out.append("")
    out.append("| guard | false hits it stops (traps + QQP) | true paraphrases it costs (all sets) |")
    out.append("|---|---|---|")
    for gname in sorted(set(lost) | set(caught)):
        out.append(f"| {gname} | {caught[gname]} | {lost[gname]} |")
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
    for ps in sets.values():
        score(ps, emb, DEFAULT.context_min_ratio)
    text = report(sets, qqp_path)
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
