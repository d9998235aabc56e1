"""`hybrid-pipeline`: benchmarks -> parallel QA table -> train (Ray Train) -> encode (fan out)
-> evaluation matrix (and any extra benchmark: Tatoeba, bitext, MIRACL, TREC, MTEB) -> log
to MLflow and register, with the champion/challenger gate -> when a new champion was
promoted and `index` is set, start the `hybrid-index` deployment for its search index.

Every step is a cached task (see tasks/): re-running with the same parameters and data is
cache hits all the way and registers no new model version. Outputs live under
`results_dir`; `<results_dir>/latest.json` names the last run's reports and MLflow run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from flows.common import (
    benchmark_plan,
    default_sources,
    ensure_ray,
    eval_splits_for,
    evaluate_models,
    prepare_lareqa,
    training_overrides,
)
from hybrid.evaluation.metric_names import DEFAULT_PROMOTION_METRIC
from hybrid.io import write_json
from tasks.data import build_pairs_table
from tasks.index import check_index_config, follow_champion
from tasks.tracking import log_and_register
from tasks.train import train_model


@flow(name="hybrid-pipeline", log_prints=True)
def pipeline(
    profile: str = "quick",
    overrides: dict[str, Any] | None = None,
    sources: list[str] | None = None,
    benchmarks: list[str] | dict[str, str | None] | None = None,
    eval_splits: dict[str, str] | None = None,
    languages: list[str] | None = None,
    promotion_metric: str = DEFAULT_PROMOTION_METRIC,
    promotion_margin: float = 0.005,
    results_dir: str = "runs/pipeline",
    experiment: str = "hybrid-pipeline",
    index: dict | None = None,
) -> dict:
    """Train and evaluate one retriever; returns report paths, MLflow run and registry alias.

    profile/overrides: the training config, a profile of hybrid/train/profiles with dotted
    overrides of any field of `hybrid.train.config` (`hybrid train --help` lists them), e.g.
    {"model.model": "DIR", "data.strategy": "x-y", "run.workers": 2, "run.steps": 50};
    checked before anything runs (`flows.common.training_overrides`; CPUs per worker
    default to the Ray cluster's CPUs shared evenly, capped at the largest node's); the
    evaluation fans out over `run.workers` shards. sources: `hybrid data pairs` source specs
    (default: the XQuAD-R train split). benchmarks: entries `NAME[:SOURCE][?OPTIONS]`
    (`flows.common.benchmark_plan`): XQuAD-R and MLQA-R always (an entry sets another
    source), plus any of tatoeba, bitext, miracl, trec, mteb, e.g. ["tatoeba"]; checked
    before anything runs. eval_splits: per LAReQA benchmark "all" or "heldout" (default:
    XQuAD-R held-out articles, unseen in training). languages: restrict the LAReQA
    evaluation (extras take `?langs=`).
    promotion_metric/promotion_margin: the champion gate (an MLflow metric name).
    index: the champion's search index, {"corpus": PATH, "dir": DIR} plus optional "kind"
    (flat), "model" (models:/hybrid-retriever@champion) and "deployment"
    (hybrid-index/champion): when this run's version is the champion and DIR does not hold
    it yet, a run of that deployment is started (not waited for; `tasks/index.py`).
    """
    log = get_run_logger()
    plan = benchmark_plan(benchmarks)  # bad entries stop here, before anything is written
    index = check_index_config(index)
    sources = sources or default_sources()
    eval_splits = eval_splits_for(eval_splits)
    results = str(Path(results_dir).resolve())
    ensure_ray()
    overrides, cfg = training_overrides(profile, overrides)
    workers = cfg.run.workers

    prepared = prepare_lareqa(plan.lareqa, results)
    pairs = build_pairs_table(sources, results)
    trained = train_model(profile, overrides, pairs, results)
    log.info("trained: %s (%s)", trained["model_dir"], trained["summary"])

    evals = evaluate_models([trained["model_dir"]], prepared, eval_splits, languages, results,
                            max(1, workers), plan.extras)[0]

    config = {"flow": "hybrid-pipeline", "profile": profile, "overrides": overrides,
              "sources": sources, "benchmarks": plan.lareqa, "eval_splits": eval_splits,
              "languages": languages, "train": trained["config"]}
    if plan.extras:
        config["extra_benchmarks"] = plan.extras
    logged = log_and_register(experiment, config, trained, evals, promotion_metric,
                              promotion_margin)
    out = {"reports": {e["benchmark"]: str(Path(e["out"]) / "report.md") for e in evals},
           "heatmaps": {e["benchmark"]: str(Path(e["out"]) / "map_matrix.png") for e in evals
                        if (Path(e["out"]) / "map_matrix.png").is_file()},
           "train_dir": trained["out"], "mlflow": logged}
    if index is not None:
        out["index_run"] = follow_champion(index, logged["version"])
    write_json(Path(results) / "latest.json", out)
    for bench, path in out["reports"].items():
        log.info("report %s: %s", bench, path)
    log.info("MLflow run: %s", logged["run_url"])
    log.info("registered %s v%s as %s", logged["model"], logged["version"], logged["alias"])
    if out.get("index_run"):
        log.info("index of the new champion: flow run %s (%s)", out["index_run"],
                 index["deployment"])
    return out


if __name__ == "__main__":
    pipeline()
