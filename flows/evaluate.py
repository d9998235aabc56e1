"""`hybrid-evaluate`: evaluate any model (a dir, `me5-small`, an HF id, or a registry URI such
as `models:/hybrid-retriever@champion`) on the benchmarks; logs to MLflow experiment
`hybrid-evaluate` (metrics and reports, no registration)."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow, get_run_logger, task, unmapped

from flows.common import default_benchmarks, ensure_ray
from tasks.data import download_benchmark, is_remote, prepare_benchmark
from tasks.evaluate import encode_benchmark_task, evaluation_matrix
from tasks.tracking import flat_metrics


@task(retries=2, retry_delay_seconds=5)
def resolve_model_task(model: str) -> str:
    """A local HF dir for `model`; `models:/` URIs come from the MLflow registry."""
    from hybrid.model import resolve_model

    if model.startswith("models:/"):
        from tasks.registry import resolve_models_uri

        return str(resolve_models_uri(model))
    return str(resolve_model(model))


@task
def log_evaluation(experiment: str, model: str, evals: list[dict]) -> str:
    import mlflow

    mlflow.set_experiment(experiment)
    with mlflow.start_run() as run:
        mlflow.log_param("model", model)
        for e in evals:
            m = json.loads((Path(e["out"]) / "metrics.json").read_text(encoding="utf-8"))
            mlflow.log_metrics(flat_metrics(e["benchmark"], m))
            mlflow.log_artifacts(e["out"], f"eval/{e['benchmark']}")
    return run.info.run_id


@flow(name="hybrid-evaluate", log_prints=True)
def evaluate(model: str = "models:/hybrid-retriever@champion",
             benchmarks: dict[str, str] | None = None,
             eval_splits: dict[str, str] | None = None, languages: list[str] | None = None,
             shards: int = 1, results_dir: str = "runs/evaluate",
             experiment: str = "hybrid-evaluate") -> dict:
    """Evaluate `model` on `benchmarks` (default XQuAD-R held-out and MLQA-R)."""
    log = get_run_logger()
    benchmarks = benchmarks or default_benchmarks()
    eval_splits = {"xquad-r": "heldout", **(eval_splits or {})}
    results = str(Path(results_dir).resolve())
    ensure_ray()
    model_dir = resolve_model_task(model)
    names = list(benchmarks)
    dirs = []
    for n in names:
        wait = [download_benchmark.submit(n, benchmarks[n])] if is_remote(benchmarks[n]) else None
        dirs.append(prepare_benchmark.submit(n, benchmarks[n], results, wait_for=wait).result())
    splits = [eval_splits.get(n, "all") for n in names]
    encoded = encode_benchmark_task.map(unmapped(model_dir), names, dirs, unmapped(results),
                                        splits, unmapped(languages), unmapped(shards))
    evals = [e.result() for e in evaluation_matrix.map(
        unmapped(model_dir), names, dirs, unmapped(results), splits, unmapped(languages),
        wait_for=[encoded])]
    run_id = log_evaluation(experiment, model, evals)
    reports = {e["benchmark"]: str(Path(e["out"]) / "report.md") for e in evals}
    for bench, path in reports.items():
        log.info("report %s: %s", bench, path)
    return {"model": model, "model_dir": model_dir, "reports": reports, "run_id": run_id}


if __name__ == "__main__":
    evaluate()
