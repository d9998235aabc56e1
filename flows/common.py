"""Defaults and helpers shared by the flows."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    from hybrid.paths import default_data_dir

    d = default_data_dir()
    return d if d is not None else Path("data")


def default_sources() -> list[str]:
    """Training data: the XQuAD-R train split (offline copy when present, else upstream)."""
    local = data_dir() / "lareqa" / "xquad-r"
    return [f"xquad-r:{local}" if local.is_dir() else "xquad-r:upstream"]


def default_benchmarks() -> dict[str, str]:
    out = {}
    for name, sub in (("xquad-r", "xquad-r"), ("mlqa-r", "mlqa-r-sample")):
        local = data_dir() / "lareqa" / sub
        out[name] = str(local) if local.is_dir() else "upstream"
    return out


def ensure_ray() -> None:
    """Connect to the cluster in RAY_ADDRESS (e.g. the local stack's head), else start a
    local Ray for this flow run; tasks then share it (training, sharded encoding)."""
    import ray

    if not ray.is_initialized():
        if os.environ.get("RAY_ADDRESS"):
            ray.init(log_to_driver=True)
        else:
            ray.init(include_dashboard=False, log_to_driver=True)


def cpus_for(workers: int) -> int:
    """CPUs per training worker: the connected cluster's CPUs over `workers`, at most the
    largest node's (Ray otherwise gives each worker 1 CPU and torch 1 thread)."""
    import ray

    nodes = [n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")]
    total = int(sum(nodes))
    return max(1, min(int(max(nodes, default=1)), total // max(1, workers)))
