"""Log a pipeline run to MLflow and register its model, then apply the promotion gate
(`tasks.mlflow_runs.log_pipeline_run`); `log_evaluation` logs an evaluation-only run.

`log_and_register` is cached on its inputs' content, and the run is tagged with that key:
the same inputs never log a second run, even with Prefect's cache gone. An unreachable
tracking server fails the task in bounded time, with one line naming it; the task is
retried on that error only (tasks/mlflow_server.py), and an attempt that died mid-logging
leaves its run (tagged with the key, no version yet), which the next attempt finishes.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task

from hybrid.evaluation.metric_names import DEFAULT_PROMOTION_METRIC
from tasks.caching import cached_task
from tasks.hashing import tree_hash
from tasks.mlflow_server import RETRIED, tracking_server


def _log_key(p: dict) -> dict:
    return {"experiment": p["experiment"], "config": p["config"],
            "model": tree_hash(p["train"]["model_dir"]),
            "evals": {e["benchmark"]: tree_hash(Path(e["out"]) / "metrics.json") for e in p["evals"]},
            "promotion": [p["promotion_metric"], p["promotion_margin"]]}


@cached_task(_log_key, **RETRIED)
@tracking_server("logging the run and registering its model")
def log_and_register(experiment: str, config: dict, train: dict, evals: list[dict],
                     promotion_metric: str = DEFAULT_PROMOTION_METRIC,
                     promotion_margin: float = 0.005, *, key: str) -> dict:
    """Log everything to MLflow, register the model, promote; returns run id/url/version/alias."""
    from tasks.mlflow_runs import log_pipeline_run

    return log_pipeline_run(key, experiment, config, train, evals, tree_hash(train["model_dir"]),
                            promotion_metric, promotion_margin)


@task
@tracking_server("logging the evaluation")
def log_evaluation(experiment: str, model: str, evals: list[dict]) -> str:
    """One MLflow run in `experiment` for an evaluation without training (`hybrid-evaluate`);
    returns the run id. An unreachable server fails in bounded time with one line (not
    retried: a retry would log a second run)."""
    from tasks.mlflow_runs import log_evaluation_run

    return log_evaluation_run(experiment, model, evals)
