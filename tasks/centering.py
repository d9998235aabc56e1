"""`center_model_task`: a model with per-language centering means (`hybrid.centering`),
estimated on a pairs table's training side, under `<results>/centered/<key>/`; cached on
the model's and the table's content, the sample size and the library code it runs."""

from __future__ import annotations

from pathlib import Path

from hybrid.centering import FILE
from tasks.caching import cached_task, results_path
from tasks.hashing import library_hash, tree_hash


def _center_key(p: dict) -> dict:
    return {"model": tree_hash(p["model_dir"]),
            "data": tree_hash(Path(p["pairs_dir"]) / "pairs.parquet"),
            "per_language": p["per_language"],
            "code": library_hash("centering.py", "evaluation", "encoder.py"),
            "results": results_path(p)}


@cached_task(_center_key, area=lambda p: Path(p["results_dir"]) / "centered", done=FILE,
             task_run_name="center-model")
def center_model_task(model_dir: str, pairs_dir: str, results_dir: str, per_language: int = 512, *,
                      out: Path) -> None:
    """`hybrid center --model MODEL_DIR --data PAIRS_DIR --out OUT`; the task returns OUT."""
    from hybrid.centering import center_model

    center_model(model_dir, pairs_dir, out, per_language=per_language)
