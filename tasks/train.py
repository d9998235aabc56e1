"""The training task: `hybrid.train.train` on a profile with overrides, cached on the full
training config plus the pairs table's content hash. Output: `<results>/train/<key>/` with
`model/` and `train_summary.json` (a rerun into the same dir resumes from Ray checkpoints).
"""

from __future__ import annotations

import json
from pathlib import Path

from tasks.caching import cached_task, results_path
from tasks.hashing import library_hash, tree_hash


def train_config(profile: str, overrides: dict, pairs_dir: str) -> dict:
    """The full training config (a dict) for `profile` with dotted `overrides` applied."""
    from hybrid.train.config import resolve

    return resolve(profile, {**overrides, "data.pairs": str(pairs_dir)}).to_dict()


def _model_hash(spec: str) -> str:
    p = Path(spec).expanduser()
    return tree_hash(p) if p.is_dir() else spec  # a name/URI is its own identity


def _train_key(p: dict) -> dict:
    cfg = train_config(p["profile"], p["overrides"], p["pairs_dir"])
    cfg["data"].pop("pairs")
    cfg["model"]["model"] = _model_hash(cfg["model"]["model"])
    if cfg["optim"].get("distill_teacher"):  # a retrained teacher is another training
        cfg["optim"]["distill_teacher"] = _model_hash(cfg["optim"]["distill_teacher"])
    return {"config": cfg, "pairs": tree_hash(Path(p["pairs_dir"]) / "pairs.parquet"),
            "code": library_hash(), "results": results_path(p)}


def _trained(p: dict, out: Path) -> dict:
    cfg = {**train_config(p["profile"], p["overrides"], p["pairs_dir"]), "out": str(out)}
    summary = json.loads((out / "train_summary.json").read_text(encoding="utf-8"))
    keep = ("steps", "pairs_seen", "wall_time_s", "pairs_per_s", "best_val_loss")
    return {"out": str(out), "model_dir": str(out / "model"), "config": cfg,
            "summary": {k: summary[k] for k in keep if k in summary}}


@cached_task(_train_key, area=lambda p: Path(p["results_dir"]) / "train",
             done="train_summary.json", result=_trained)
def train_model(profile: str, overrides: dict, pairs_dir: str, results_dir: str, *,
                out: Path) -> None:
    """Train into `out`; the task returns {"out", "model_dir", "config", "summary"}."""
    from hybrid.train import train
    from hybrid.train.config import resolve

    train(resolve(profile, {**overrides, "data.pairs": str(pairs_dir), "out": str(out)},
                  require_io=True))
