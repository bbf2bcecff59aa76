"""Run the atheris fuzz targets: ``python -m tests.fuzz.run --seconds 60`` (all targets, one
subprocess each), or ``--target sse``. Exit status non-zero on a crash or a slow input (> 1 s).

CI: 60 s per target (``--seconds 60``). Nightly: ``--seconds 1800`` with a kept corpus, e.g.
``python -m tests.fuzz.run --seconds 1800 --corpus .fuzz-corpus``; crashing inputs are written
as ``crash-*`` / ``timeout-*`` files in the working directory (``--artifacts DIR``).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

SEEDS = {
    "sse": [b"data: {\"a\":1}\n\nevent: x\ndata: [DONE]\n\n", b": comment\ndata:x\ndata: y\n\n"],
    "request": [b'\x00{"model":"m","messages":[{"role":"user","content":"hi"}],"n":2,"stream":true}'],
    "dlp": [b"card 4111 1111 1111 1111, mail a@b.co, key sk-proj-abcdefghijklmnopqrstuvwx, IBAN GB82WEST12345698765432"],
    "config": [b"providers:\n  mock: {type: mock}\nmodels:\n  m: {targets: [mock/x]}\npipeline: [router]\n"],
    "auth": [b"wllm_abc_def Bearer eyJhbGciOiJIUzI1NiJ9.e30.x"],
    "netguard": [b"http://127.1/", b"https://api.openai.com/v1", b"http://[::ffff:127.0.0.1]/"],
}


def _child(name: str, seconds: int, corpus: str | None, artifacts: str) -> None:
    import atheris

    from tests.fuzz.targets import TARGETS

    fn = TARGETS[name]
    argv = [sys.argv[0], f"-max_total_time={seconds}", "-timeout=1", "-rss_limit_mb=2048", "-max_len=65536",
            f"-artifact_prefix={artifacts.rstrip('/')}/{name}-"]
    if corpus:
        d = os.path.join(corpus, name)
        os.makedirs(d, exist_ok=True)
        for i, seed in enumerate(SEEDS.get(name, [])):
            with open(os.path.join(d, f"seed{i}"), "wb") as f:
                f.write(seed)
        argv.append(d)
    atheris.Setup(argv, fn)
    atheris.Fuzz()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--target", action="append", help="one target (repeatable); default all")
    ap.add_argument("--corpus", default=None, help="corpus dir (one subdir per target); default a temporary one")
    ap.add_argument("--artifacts", default=".")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child, args.seconds, args.corpus, args.artifacts)
        return 0
    from tests.fuzz.targets import TARGETS

    names = args.target or sorted(TARGETS)
    import tempfile

    corpus = args.corpus or tempfile.mkdtemp(prefix="watchllm-fuzz-")
    os.makedirs(args.artifacts, exist_ok=True)
    failed = []
    for name in names:
        t0 = time.monotonic()
        cmd = [sys.executable, "-m", "tests.fuzz.run", "--child", name, "--seconds", str(args.seconds),
               "--corpus", corpus, "--artifacts", args.artifacts]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=args.seconds * 3 + 120)
        tail = [ln for ln in res.stderr.splitlines() if ln.startswith(("#", "Done", "==", "INFO: -max_total_time"))][-1:]
        print(f"{name}: exit {res.returncode} in {time.monotonic() - t0:.1f}s {tail}", flush=True)
        if res.returncode != 0:
            failed.append(name)
            sys.stderr.write(res.stderr[-4000:])
    print("fuzz: all targets clean" if not failed else f"fuzz: FAILED {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
