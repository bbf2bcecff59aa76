"""`watchllm plugins new KIND NAME`: the generated package installs and passes its own test."""
from __future__ import annotations

import subprocess
import sys

import pytest

from gateway.scaffold import scaffold


@pytest.mark.parametrize("kind", ["middleware", "provider", "tool"])
def test_scaffolded_plugin_passes_its_generated_test_after_pip_install_e(kind, tmp_path):
    name = f"scaffolded_{kind}"
    out = subprocess.run([sys.executable, "-m", "gateway.cli", "plugins", "new", kind, name, "--dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    root = tmp_path / f"watchllm-{name.replace('_', '-')}"
    assert (root / "pyproject.toml").read_text().count(f'{name} = "watchllm_{name}:') == 1
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", str(root)]
    subprocess.run(pip, check=True, timeout=180, capture_output=True)
    try:
        test = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                              cwd=root, capture_output=True, text=True, timeout=120)
        assert test.returncode == 0, test.stdout + test.stderr
        assert " passed" in test.stdout
        listing = subprocess.run([sys.executable, "-m", "gateway.cli", "plugins", "list"], capture_output=True, text=True, timeout=60)
        assert name in listing.stdout
    finally:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", "-q", f"watchllm-{name.replace('_', '-')}"],
                       timeout=120, capture_output=True)


def test_bad_names_and_existing_directories_are_refused(tmp_path):
    with pytest.raises(ValueError):
        scaffold("tool", "Bad-Name", tmp_path)
    scaffold("tool", "ok", tmp_path)
    with pytest.raises(FileExistsError):
        scaffold("tool", "ok", tmp_path)
