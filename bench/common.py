"""Shared helpers of the benchmarks: the XQuAD-R pairs table, machine facts, and running one
measurement in a fresh subprocess (so its peak RSS is its own)."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
RESULTS = ROOT / "results"


def pairs_dir(arg: str | None = None) -> Path:
    """The XQuAD-R train-split pairs table: `arg` if given, else built once into the cache."""
    if arg:
        return Path(arg)
    from hybrid.cli import main
    from hybrid.paths import cache_dir, default_data_dir

    out = cache_dir() / "bench" / "pairs-xquad-r"
    if not (out / "pairs.parquet").is_file():
        src = default_data_dir() / "lareqa" / "xquad-r"
        if main(["data", "pairs", "--source", f"xquad-r:{src}", "--out", str(out)]) != 0:
            sys.exit("could not build the pairs table")
    return out


#: CPU flags that decide which precision and kernels are fast (recorded with every result).
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8", "amx_tile")


def cpu() -> dict:
    """The CPU model and its flags of `CPU_FLAGS` (from /proc/cpuinfo; empty elsewhere)."""
    info = Path("/proc/cpuinfo")
    text = info.read_text() if info.exists() else ""
    model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")),
                 platform.processor())
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
    return {"model": model, "flags": [f for f in CPU_FLAGS if f in flags]}


def machine() -> dict:
    import torch

    return {"platform": platform.platform(), "cpu": cpu(), "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "load_avg_1min": round(os.getloadavg()[0], 2),
            "date_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M")}


def with_earlier_machines(path: str | Path, result: dict) -> dict:
    """`result` with the runs of other machines kept: those of the result file at `path` (its
    own run and its `earlier_machines`) whose CPU model or flags differ from `result`'s, under
    `earlier_machines`, oldest first. A run that recorded no CPU counts as another machine."""
    path = Path(path)
    if not path.is_file():
        return result
    old = json.loads(path.read_text(encoding="utf-8"))
    kept = [*old.pop("earlier_machines", []), old]
    here = result["machine"].get("cpu")
    result["earlier_machines"] = [r for r in kept if r.get("machine", {}).get("cpu") != here]
    return result


def cpu_facts() -> dict:
    """The CPU as lscpu names it: model, its avx/amx/fma flags, and the core count."""
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    info = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    flags = info.get("Flags", "").split()
    return {"cpu_model": info.get("Model name", "?").strip(),
            "cpu_flags": sorted(f for f in flags if f.startswith(("avx", "amx", "fma"))),
            "cores": os.cpu_count()}


def rss_mib() -> float:
    """This process's resident set size now (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def peak_rss_mib() -> float:
    """This process's peak resident set size (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run_worker(module: str, spec: dict) -> dict:
    """Run `python -m module --worker SPEC.json OUT.json` in a fresh process; its JSON result."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
        proc = subprocess.run([sys.executable, "-m", module, "--worker", str(spec_path), str(out_path)],
                              cwd=REPO, env=env)
        if proc.returncode != 0 or not out_path.is_file():
            sys.exit(f"{module} worker failed ({spec})")
        return json.loads(out_path.read_text(encoding="utf-8"))


def write_worker_result(path: str, result: dict) -> None:
    result["peak_rss_mib"] = peak_rss_mib()
    Path(path).write_text(json.dumps(result), encoding="utf-8")
