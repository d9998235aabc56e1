"""`hybrid-evaluate`: evaluate any model (a dir, `me5-small`, an HF id, or a registry URI such
as `models:/hybrid-retriever@champion`) on the benchmarks; logs to MLflow experiment
`hybrid-evaluate` (metrics and reports, no registration)."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger

from flows.common import (
    benchmark_plan,
    ensure_ray,
    eval_splits_for,
    evaluate_models,
    prepare_lareqa,
)
from tasks.evaluate import resolve_model_task
from tasks.tracking import log_evaluation


@flow(name="hybrid-evaluate", log_prints=True)
def evaluate(model: str = "models:/hybrid-retriever@champion",
             benchmarks: list[str] | dict[str, str | None] | None = None,
             eval_splits: dict[str, str] | None = None, languages: list[str] | None = None,
             shards: int = 1, results_dir: str = "runs/evaluate",
             experiment: str = "hybrid-evaluate") -> dict:
    """Evaluate `model` on XQuAD-R (held-out) and MLQA-R plus the extra `benchmarks`
    (entries as in `hybrid-pipeline`, e.g. ["tatoeba"]; checked before anything runs)."""
    log = get_run_logger()
    plan = benchmark_plan(benchmarks)  # bad entries stop here, before anything is written
    eval_splits = eval_splits_for(eval_splits)
    results = str(Path(results_dir).resolve())
    ensure_ray()
    model_dir = resolve_model_task(model)
    prepared = prepare_lareqa(plan.lareqa, results)
    evals = evaluate_models([model_dir], prepared, eval_splits, languages, results, shards,
                            plan.extras)[0]
    run_id = log_evaluation(experiment, model, evals)
    reports = {e["benchmark"]: str(Path(e["out"]) / "report.md") for e in evals}
    for bench, path in reports.items():
        log.info("report %s: %s", bench, path)
    return {"model": model, "model_dir": model_dir, "reports": reports, "run_id": run_id}


if __name__ == "__main__":
    evaluate()
