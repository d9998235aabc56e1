"""The training task: `hybrid.train.train` on a profile with overrides, cached on the full
training config plus the pairs table's content hash. Output: `<results>/train/<key>/` with
`model/` and `train_summary.json` (a rerun into the same dir resumes from Ray checkpoints).
"""

from __future__ import annotations

import json
from pathlib import Path

from prefect import task
from prefect.cache_policies import TASK_SOURCE, CacheKeyFnPolicy

from tasks.hashing import dict_hash, library_hash, tree_hash


def train_config(profile: str, overrides: dict, pairs_dir: str) -> dict:
    """The full training config (a dict) for `profile` with dotted `overrides` applied."""
    from hybrid.train.config import load_profile

    cfg = load_profile(profile).override(**{"data.pairs": str(pairs_dir), **overrides})
    return cfg.to_dict()


def _model_hash(spec: str) -> str:
    p = Path(spec).expanduser()
    return tree_hash(p) if p.is_dir() else spec  # a name/URI is its own identity


def _train_key(ctx, p) -> str:
    cfg = train_config(p["profile"], p["overrides"], p["pairs_dir"])
    cfg["data"].pop("pairs")
    cfg["model"]["model"] = _model_hash(cfg["model"]["model"])
    return dict_hash({"config": cfg, "pairs": tree_hash(Path(p["pairs_dir"]) / "pairs.parquet"),
                      "code": library_hash(),
                      "results": str(Path(p["results_dir"]).resolve())})


@task(cache_policy=TASK_SOURCE + CacheKeyFnPolicy(cache_key_fn=_train_key), persist_result=True)
def train_model(profile: str, overrides: dict, pairs_dir: str, results_dir: str) -> dict:
    """Train; returns {"out", "model_dir", "config", "summary"} (small dict, paths)."""
    from hybrid.train import train
    from hybrid.train.config import TrainConfig

    key = _train_key(None, {"profile": profile, "overrides": overrides, "pairs_dir": pairs_dir,
                            "results_dir": results_dir})
    out = Path(results_dir) / "train" / key[:16]
    cfg = train_config(profile, overrides, pairs_dir)
    cfg["out"] = str(out)
    if not (out / "train_summary.json").is_file() or not (out / "model").is_dir():
        train(TrainConfig.from_dict(cfg).validate())
    summary = json.loads((out / "train_summary.json").read_text(encoding="utf-8"))
    keep = ("steps", "pairs_seen", "wall_time_s", "pairs_per_s", "best_val_loss")
    return {"out": str(out), "model_dir": str(out / "model"), "config": cfg,
            "summary": {k: summary[k] for k in keep if k in summary}}
