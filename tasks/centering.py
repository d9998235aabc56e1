"""`center_model_task`: a model with per-language centering means (`hybrid.centering`),
estimated on a pairs table's training side, under `<results>/centered/<key>/`; cached on
the model's and the table's content, the sample size and the library code it runs."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import TASK_SOURCE, CacheKeyFnPolicy

from tasks.hashing import dict_hash, library_hash, tree_hash


def _center_key(ctx, p) -> str:
    return dict_hash({"model": tree_hash(p["model_dir"]),
                      "data": tree_hash(Path(p["pairs_dir"]) / "pairs.parquet"),
                      "per_language": p.get("per_language", 512),
                      "code": library_hash("centering.py", "evaluation", "encoder.py"),
                      "results": str(Path(p["results_dir"]).resolve())})


@task(cache_policy=TASK_SOURCE + CacheKeyFnPolicy(cache_key_fn=_center_key), persist_result=True,
      task_run_name="center-model")
def center_model_task(model_dir: str, pairs_dir: str, results_dir: str, per_language: int = 512) -> str:
    """`hybrid center --model MODEL_DIR --data PAIRS_DIR`; returns the centered model's dir."""
    from hybrid.centering import FILE, center_model

    key = _center_key(None, {"model_dir": model_dir, "pairs_dir": pairs_dir,
                             "per_language": per_language, "results_dir": results_dir})
    out = Path(results_dir) / "centered" / key[:16]
    if not (out / FILE).is_file():
        center_model(model_dir, pairs_dir, out, per_language=per_language)
    return str(out)
