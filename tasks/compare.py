"""Tasks of the strategy comparison: the MLflow parent run and one nested child run per
evaluated model, and the comparison report (`hybrid.evaluation.compare_report`). Resolving
the untrained model, training, encoding and the matrix are the pipeline's own cached tasks
(tasks/evaluate.py, tasks/train.py).

MLflow: one parent run per comparison (tagged `hybrid.key`, the hash of the comparison's
config; a finished parent with the same key is reused, so an identical re-run logs nothing
new); each evaluated model is a child run tagged `mlflow.parentRunId` = the parent's id,
`hybrid.strategy`, `hybrid.seed`, `hybrid.model`, with the pipeline's metric names
(`xquad_r.mAP.multi`, ...) and its reports as artifacts. The parent gets the report
(markdown, PNGs, compare.json) and the verdict as tags.

The MLflow tasks wait a bounded time for the tracking server and are retried when it was
unreachable (tasks/tracking_server.py); a retried child run finds the one an earlier attempt
finished, or deletes the one it left unfinished, so a parent never gets two children for one
model.
"""

from __future__ import annotations

import json
from pathlib import Path

from prefect import task

from tasks.hashing import dict_hash
from tasks.tracking import KEY_TAG, flat_params, log_evals, train_metrics
from tasks.tracking_server import (
    TRACKING_RETRIES,
    TRACKING_RETRY_DELAY_S,
    retry_if_unreachable,
    tracking_server,
)

PARENT_TAG = "mlflow.parentRunId"
RETRIED = {"retries": TRACKING_RETRIES, "retry_delay_seconds": TRACKING_RETRY_DELAY_S,
           "retry_condition_fn": retry_if_unreachable}


@task(**RETRIED)
@tracking_server("starting the comparison's parent run")
def start_parent_run(experiment: str, config: dict) -> dict:
    """The parent run: {"run_id", "experiment_id", "reused"} (reused: a finished parent with
    this config's key exists; its children and report are already logged)."""
    import mlflow

    key = dict_hash(config)
    exp = mlflow.set_experiment(experiment)
    client = mlflow.MlflowClient()
    found = client.search_runs([exp.experiment_id], f"tags.`{KEY_TAG}` = '{key}' and "
                               "attributes.status = 'FINISHED'", max_results=1)
    if found:
        return {"run_id": found[0].info.run_id, "experiment_id": exp.experiment_id, "reused": True}
    for stale in client.search_runs([exp.experiment_id], f"tags.`{KEY_TAG}` = '{key}' and "
                                    "attributes.status = 'RUNNING'"):
        client.set_terminated(stale.info.run_id, status="FAILED")  # an interrupted attempt
    run = client.create_run(exp.experiment_id, run_name=config.get("run_name"),
                            tags={KEY_TAG: key, "hybrid.flow": "hybrid-compare"})
    client.log_batch(run.info.run_id, params=[
        mlflow.entities.Param(k, v[:6000]) for k, v in flat_params(config).items()])
    return {"run_id": run.info.run_id, "experiment_id": exp.experiment_id, "reused": False}


@task(task_run_name="log-child-{run[label]}-seed{run[seed]}", **RETRIED)
@tracking_server("logging a comparison child run")
def log_child_run(parent: dict, run: dict) -> str | None:
    """One nested run for an evaluated model under `parent`; returns its id."""
    if parent["reused"]:
        return None
    import mlflow
    from mlflow.entities import Metric, Param

    client = mlflow.MlflowClient()
    name = f"{run['label']} seed {run['seed']}" if run.get("seed") is not None else run["label"]
    tags = {PARENT_TAG: parent["run_id"], "hybrid.strategy": run["strategy"],
            "hybrid.label": run["label"], "hybrid.model": run["model"],
            "hybrid.seed": str(run.get("seed"))}
    same = client.search_runs([parent["experiment_id"]], " and ".join(
        f"tags.`{k}` = '{tags[k]}'" for k in (PARENT_TAG, "hybrid.label", "hybrid.seed")))
    for r in same:
        if r.info.status != "FINISHED":
            client.delete_run(r.info.run_id)  # left unfinished by an earlier attempt
    for r in same:
        if r.info.status == "FINISHED":
            return r.info.run_id  # logged by an earlier attempt of this task
    child = client.create_run(parent["experiment_id"], run_name=name, tags=tags)
    rid = child.info.run_id
    params = {"strategy": run["strategy"], "alpha": run.get("alpha"), "seed": run.get("seed"),
              "model": run["model"], **flat_params(run.get("train_config") or {}, "train.")}
    metrics = log_evals(client, rid, [{"benchmark": b, "out": o} for b, o in run["evals"].items()])
    metrics.update(train_metrics(run.get("train_summary")))
    client.log_batch(rid, metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()],
                     params=[Param(k, str(v)[:6000]) for k, v in params.items()])
    if run.get("train_out"):
        client.log_artifact(rid, str(Path(run["train_out"]) / "train_summary.json"))
    client.set_terminated(rid)
    return rid


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
    """Log the report (markdown, PNGs, compare.json) and the verdict to the parent; close it."""
    import mlflow

    client = mlflow.MlflowClient()
    rid = parent["run_id"]
    if not parent["reused"]:
        client.log_artifacts(rid, str(Path(report["report"]).parent), "compare")
        doc = json.loads(Path(report["json"]).read_text(encoding="utf-8"))
        v = doc["verdict"]
        for claim in ("claim_close", "claim_bias"):
            client.set_tag(rid, f"hybrid.verdict.{claim}", str(v[claim]))
        client.set_tag(rid, "hybrid.verdict.spread_measured", str(v["spread_measured"]))
        client.set_terminated(rid)
    base = mlflow.get_tracking_uri().rstrip("/")
    return f"{base}/#/experiments/{parent['experiment_id']}/runs/{rid}"
