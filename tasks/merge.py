"""`merge_models_task`: the weight interpolation of two models (`hybrid merge`; with a base
model, A + weight * (B - base)), the weight chosen on the pairs table's validation ids
(`hybrid.model.merge_select`), under `<results>/merged/<key>/`; cached on the models' and
the table's content, the weights tried,
the validation ids and the library code it runs. Returns {"model_dir", "weight", "table"}
(the table: one row per weight tried, its mono, pooled and mean validation mAP)."""

from __future__ import annotations

import json
from pathlib import Path

from tasks.caching import cached_task, results_path
from tasks.hashing import library_hash, tree_hash

RECORD = "merge.json"


def _merge_key(p: dict) -> dict:
    base = {} if p["base_dir"] is None else {"base": tree_hash(p["base_dir"])}
    return {"a": tree_hash(p["a_dir"]), "b": tree_hash(p["b_dir"]), **base,
            "data": tree_hash(Path(p["pairs_dir"]) / "pairs.parquet"),
            "weights": [float(w) for w in p["weights"]], "val_ids": p["val_ids"],
            "code": library_hash("model", "evaluation", "encoder.py", "train/data.py"),
            "results": results_path(p)}


def _merged(p: dict, out: Path) -> dict:
    record = json.loads((out / RECORD).read_text(encoding="utf-8"))
    return {"model_dir": str(out), "weight": record["weight"],
            "table": (record.get("selection") or {}).get("table")}


@cached_task(_merge_key, area=lambda p: Path(p["results_dir"]) / "merged", done=RECORD,
             result=_merged, task_run_name="merge-models")
def merge_models_task(a_dir: str, b_dir: str, pairs_dir: str, results_dir: str,
                      weights: list[float], val_ids: int, base_dir: str | None = None, *,
                      out: Path) -> None:
    """`hybrid merge A B [--base BASE] --select-on PAIRS_DIR --weights ... --out OUT`."""
    from hybrid.model.merge import ModelPair, merge_models
    from hybrid.model.merge_select import select_weight

    pair = ModelPair.open(a_dir, b_dir, base_dir)
    chosen = select_weight(a_dir, b_dir, pairs_dir, weights=weights, val_ids=val_ids, pair=pair)
    merge_models(a_dir, b_dir, chosen["weight"], out, selection=chosen, pair=pair)
