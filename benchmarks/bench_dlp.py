"""DLP scan cost: p50/p99 per 8 KB prompt with every built-in detector on, and the middleware's cost per request.

    .venv/bin/python benchmarks/bench_dlp.py [--n 3000]

Prompts are Faker prose with a realistic sprinkle of PII (about one finding per KB in
half of them). Pins nothing; run it on a quiet machine (``taskset -c 0``) for stable figures.
"""
from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time

from faker import Faker

from gateway.testing import ScriptedNext, make_call, make_services
from plugins.middleware.dlp import BUILTIN, Dlp, DlpConfig, Scanner


def prompts(n: int, size: int = 8192, seed: int = 1) -> list[str]:
    fake = Faker()
    Faker.seed(seed)
    rnd = random.Random(seed)
    pii = [fake.email, fake.phone_number, lambda: "4111 1111 1111 1111", fake.ipv4, lambda: "DE89 3704 0044 0532 0130 00",
           lambda: "sk-proj-" + "".join(rnd.choice("abcdefABCDEF0123456789") for _ in range(48))]
    paras = [fake.paragraph(nb_sentences=10) for _ in range(400)]
    out = []
    for i in range(n):
        parts, total = [], 0
        while total < size:
            p = rnd.choice(paras)
            if i % 2 and rnd.random() < 0.8:
                p += " " + rnd.choice(pii)()
            parts.append(p)
            total += len(p) + 1
        out.append(" ".join(parts)[:size])
    return out


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def bench_scan(n: int) -> dict[str, float]:
    scanner = Scanner(BUILTIN)
    texts = prompts(n)
    for t in texts[:50]:
        scanner.scan(t)
    times = []
    for t in texts:
        t0 = time.perf_counter()
        scanner.scan(t)
        times.append((time.perf_counter() - t0) * 1000)
    return {"p50": statistics.median(times), "p99": pct(times, 0.99), "max": max(times)}


async def bench_middleware(n: int) -> dict[str, float]:
    dlp = Dlp(DlpConfig(), make_services())
    texts = prompts(n, seed=2)

    async def once(text: str, use_dlp: bool) -> float:
        call = make_call({"model": "mock", "messages": [{"role": "user", "content": text}]})
        nxt = ScriptedNext(text="fine")
        t0 = time.perf_counter()
        if use_dlp:
            await dlp(call, nxt)
        else:
            await nxt(call)
        return (time.perf_counter() - t0) * 1000

    base = [await once(t, False) for t in texts]
    with_dlp = [await once(t, True) for t in texts]
    return {"added_p50": statistics.median(with_dlp) - statistics.median(base), "added_p99": pct(with_dlp, 0.99) - pct(base, 0.99)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000)
    args = ap.parse_args()
    scan = bench_scan(args.n)
    print(f"dlp scan, 8 KB prompt, all {len({d.name for d in BUILTIN})} detectors, n={args.n}: "
          f"p50 {scan['p50']:.3f} ms  p99 {scan['p99']:.3f} ms  max {scan['max']:.3f} ms")
    mw = asyncio.run(bench_middleware(min(args.n, 1000)))
    print(f"dlp middleware added per request (8 KB prompt, mask, JSON reply): p50 {mw['added_p50']:.3f} ms  "
          f"p99 {mw['added_p99']:.3f} ms")


if __name__ == "__main__":
    main()
