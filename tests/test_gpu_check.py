"""bench/gpu_check.py's CPU smoke mode (`--device cpu --quick`) in a fresh interpreter where
Ray, FAISS, Prefect, MLflow and pandas cannot be imported: it runs and writes its JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BLOCK = """
import importlib.abc, runpy, sys
HIDDEN = {"ray", "faiss", "prefect", "mlflow", "pandas"}
class Hide(importlib.abc.MetaPathFinder):  # as if not installed: find_spec finds nothing
    def __init__(self, inner):
        self.inner = inner
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN or not hasattr(self.inner, "find_spec"):
            return None
        return self.inner.find_spec(name, path, target)
    def find_distributions(self, *args, **kwargs):
        return getattr(self.inner, "find_distributions", lambda *a, **k: [])(*args, **kwargs)
    def invalidate_caches(self):
        getattr(self.inner, "invalidate_caches", lambda: None)()
sys.meta_path[:] = [Hide(f) for f in sys.meta_path]
sys.argv = ["bench/gpu_check.py", *sys.argv[1:]]
runpy.run_path("bench/gpu_check.py", run_name="__main__")
"""


@pytest.mark.slow
def test_cpu_smoke_mode_without_the_heavy_packages(tmp_path):
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run([sys.executable, "-c", BLOCK, "--device", "cpu", "--quick", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["imported"] == [] and r["device"] == "cpu" and r["quick"]
    g = r["gradients"]
    assert g["fp32"]["rel_diff_whole_gradient"] == 0.0  # the same device: the same numbers
    assert g["fp32_grad_cache_chunk_5"]["rel_diff_whole_gradient"] < 1e-4
    assert g["fp32_grad_cache_chunk_5"]["loss_abs_diff"] < 1e-5
    assert [(s["batch_size"], s["grad_cache_chunk"]) for s in r["speed"]] == [(8, None), (8, 2), (32, 8)]
    assert all(s["pairs_per_s"] > 0 for s in r["speed"]) and r["encode"]["texts_per_s"] > 0
    assert r["encode"]["tokenize_only_texts_per_s"] > 0
