"""Tasks of the strategy comparison: the MLflow parent run and one nested child run per
evaluated model (`tasks.mlflow_runs`), and the comparison report
(`hybrid.evaluation.compare_report`). Resolving the untrained model, training, encoding and
the matrix are the pipeline's own cached tasks (tasks/evaluate.py, tasks/train.py).

MLflow: one parent run per comparison (tagged `hybrid.key`, the hash of the comparison's
config; a finished parent with the same key is reused, so an identical re-run logs nothing
new); each evaluated model is a child run tagged `mlflow.parentRunId` = the parent's id,
`hybrid.strategy`, `hybrid.seed`, `hybrid.model`, with the pipeline's metric names
(`hybrid.evaluation.metric_names`) and its reports as artifacts. The parent gets the report
(markdown, PNGs, compare.json) and the verdict as tags. The MLflow tasks wait a bounded time
for the tracking server and are retried when it was unreachable (tasks/mlflow_server.py).
"""

from __future__ import annotations

from prefect import task

from tasks.hashing import dict_hash
from tasks.mlflow_server import RETRIED, tracking_server


@task(**RETRIED)
@tracking_server("starting the comparison's parent run")
def start_parent_run(experiment: str, config: dict) -> dict:
    """The parent run: {"run_id", "experiment_id", "reused"}."""
    from tasks.mlflow_runs import start_parent

    return start_parent(experiment, config, dict_hash(config))


@task(task_run_name="log-child-{run[label]}-seed{run[seed]}", **RETRIED)
@tracking_server("logging a comparison child run")
def log_child_run(parent: dict, run: dict) -> str | None:
    """One nested run for an evaluated model under `parent`; returns its id."""
    from tasks.mlflow_runs import log_child

    return log_child(parent, run)


@task
def compare_report_task(runs: list[dict], out: str, meta: dict, tolerance: float,
                        hybrid_alpha: float) -> dict:
    """`write_compare_report` into `out`; returns its paths."""
    from hybrid.evaluation.compare_report import write_compare_report

    return write_compare_report(runs, out, meta=meta, tolerance=tolerance,
                                hybrid_alpha=hybrid_alpha)


@task(**RETRIED)
@tracking_server("finishing the comparison's parent run")
def finish_parent_run(parent: dict, report: dict) -> str:
    """Log the report and the verdict to the parent and close it; returns its URL."""
    from tasks.mlflow_runs import finish_parent

    return finish_parent(parent, report)
