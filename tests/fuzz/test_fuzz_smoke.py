"""E5: each atheris target for ``WATCHLLM_FUZZ_SECONDS`` (60 s in CI, where ``CI`` is set; 5 s on a
developer's machine): 0 crashes and no input over 1 s. Nightly: ``python -m tests.fuzz.run --seconds 1800``."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris")  # test dependency: pip install atheris (pyproject `test` extra)

ROOT = Path(__file__).resolve().parents[2]
SECONDS = int(os.environ.get("WATCHLLM_FUZZ_SECONDS") or ("60" if os.environ.get("CI") else "5"))


@pytest.mark.parametrize("target", ["sse", "request", "dlp", "config", "auth", "netguard"])
def test_fuzz_target_smoke(target, tmp_path):
    res = subprocess.run([sys.executable, "-m", "tests.fuzz.run", "--target", target, "--seconds", str(SECONDS),
                          "--artifacts", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=SECONDS + 120)
    print(res.stdout)
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(f"{target}-")], "crash/timeout artifacts written"
