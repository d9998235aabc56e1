"""MLflow runs of the flows (no Prefect here: the tasks in tasks/tracking.py and
tasks/compare.py call these).

- `log_pipeline_run`: one run per pipeline run, tagged with its key (`KEY_TAG`): params
  (the config, flattened, credentials redacted), metrics (`hybrid.evaluation.metric_names`:
  `B.<metric>.<group>`, `B.language_bias`, `B.<headline>.<setting>`; `train.<key>`),
  artifacts (`config.json`, `train_summary.json`, `eval/<benchmark>/{report.md,
  metrics.json, map_matrix.png, map_matrix.csv}`) and the model registered as
  `hybrid-retriever`, then the promotion gate. A run with the key and a version is reused;
  one left half-logged (an attempt that died) is finished instead of starting another;
  weights registered already (same hash, `MODEL_HASH_TAG`) link to that version.
- `log_evaluation_run`: an evaluation-only run (`hybrid-evaluate`).
- the comparison: `start_parent`, `log_child`, `finish_parent` (one parent per comparison
  config, keyed; one nested child per evaluated model, never two for one model).
"""

from __future__ import annotations

import json
from pathlib import Path

from hybrid.evaluation.metric_names import flat_metrics
from tasks.mlflow_registry import MODEL_NAME, log_retriever, promote

#: The files of an evaluation directory logged as artifacts (those it has).
EVAL_ARTIFACTS = ("report.md", "map_matrix.png", "map_matrix.csv", "metrics.json")
KEY_TAG = "hybrid.key"
MODEL_HASH_TAG = "hybrid.model_hash"
PARENT_TAG = "mlflow.parentRunId"


def log_evals(client, run_id: str, evals: list[dict]) -> dict[str, float]:
    """Log each evaluation's files (`EVAL_ARTIFACTS`) under `eval/<benchmark>/` of run
    `run_id`; returns the flat metrics of all of them (`flat_metrics`), not yet logged."""
    metrics: dict[str, float] = {}
    for e in evals:
        out = Path(e["out"])
        metrics.update(flat_metrics(e["benchmark"],
                                    json.loads((out / "metrics.json").read_text(encoding="utf-8"))))
        for name in EVAL_ARTIFACTS:
            if (out / name).is_file():
                client.log_artifact(run_id, str(out / name), f"eval/{e['benchmark']}")
    return metrics


def train_metrics(summary: dict | None) -> dict[str, float]:
    """The numbers (and flags, as 0/1) of a train_summary.json as MLflow metrics `train.<key>`."""
    return {f"train.{k}": float(v) for k, v in (summary or {}).items() if isinstance(v, (int, float))}


def flat_params(d: dict, prefix: str = "") -> dict[str, str]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat_params(v, key + "."))
        else:
            out[key] = json.dumps(v) if isinstance(v, (list, tuple)) else str(v)
    return out


def registered_version(client, model_hash: str):
    """The registered version of `MODEL_NAME` whose weights hash to `model_hash`, if any."""
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name='{MODEL_NAME}'")
    except MlflowException:
        return None
    return next((v for v in versions if v.tags.get(MODEL_HASH_TAG) == model_hash), None)


def _alias_of(client, version) -> str | None:
    mv = client.get_model_version(MODEL_NAME, version.version)
    return (mv.aliases or [None])[0]


def log_pipeline_run(key: str, experiment: str, config: dict, train: dict, evals: list[dict],
                     model_hash: str, promotion_metric: str, promotion_margin: float) -> dict:
    """Log a pipeline run keyed `key` (see the module docstring); returns {"run_id",
    "run_url", "experiment", "model", "version", "alias", ...the promotion}."""
    import mlflow

    from hybrid.redact import redact, redact_config

    exp = mlflow.set_experiment(experiment)
    client = mlflow.MlflowClient()
    found = client.search_runs([exp.experiment_id], f"tags.`{KEY_TAG}` = '{key}'",
                               max_results=1)
    if found and found[0].data.tags.get("hybrid.model_version"):
        run = found[0]
        version = run.data.tags["hybrid.model_version"]
        promotion = {"version": version, "alias": run.data.tags.get("hybrid.promotion")}
    else:
        # an attempt that died mid-logging (server gone, retried) left its run: finish that one
        resume = found[0].info.run_id if found else None
        with mlflow.start_run(run_id=resume,
                              run_name=None if resume else config.get("run_name")) as active:
            mlflow.set_tag(KEY_TAG, key)
            mlflow.log_params(flat_params(redact_config(config)))  # no credentials in params
            metrics = log_evals(client, active.info.run_id, evals)
            metrics.update(train_metrics(train.get("summary")))
            mlflow.log_metrics(metrics)
            mlflow.log_artifact(str(Path(train["out"]) / "train_summary.json"))
            mlflow.log_dict(redact_config(config), "config.json")
            if promotion_metric not in metrics:
                raise ValueError(f"promotion metric {promotion_metric!r} not among the run's "
                                 f"metrics (e.g. {sorted(metrics)[:5]})")
            same = registered_version(client, model_hash)
            if same is not None:  # these weights are registered already (e.g. a retrain
                # on unchanged data): link the run to that version, register nothing
                promotion = {"version": same.version, "alias": _alias_of(client, same)}
            else:
                mv = log_retriever(train["model_dir"], MODEL_NAME,
                                   tags={KEY_TAG: key, MODEL_HASH_TAG: model_hash,
                                         promotion_metric: metrics[promotion_metric]})
                promotion = promote(mv.version, MODEL_NAME, promotion_metric,
                                    promotion_margin).as_dict()
            mlflow.set_tags({"hybrid.model_version": promotion["version"],
                             "hybrid.promotion": promotion["alias"]})
            run = client.get_run(active.info.run_id)
    base = redact(mlflow.get_tracking_uri().rstrip("/"))
    url = f"{base}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    return {"run_id": run.info.run_id, "run_url": url, "experiment": experiment,
            "model": MODEL_NAME, **promotion}


def log_evaluation_run(experiment: str, model: str, evals: list[dict]) -> str:
    """One run in `experiment` for an evaluation without training: param `model` and
    `benchmarks`, the evaluations' metrics and files (`log_evals`); returns the run id."""
    import mlflow

    mlflow.set_experiment(experiment)
    with mlflow.start_run() as run:
        mlflow.log_params({"model": model,
                           "benchmarks": json.dumps([e["benchmark"] for e in evals])})
        mlflow.log_metrics(log_evals(mlflow.MlflowClient(), run.info.run_id, evals))
    return run.info.run_id


# ------------------------------------------------------------------ the comparison's runs
def start_parent(experiment: str, config: dict, key: str) -> dict:
    """The comparison's parent run: {"run_id", "experiment_id", "reused"} (reused: a finished
    parent with this key exists; its children and report are already logged). Parents an
    interrupted attempt left running are marked FAILED."""
    import mlflow

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


def log_child(parent: dict, run: dict) -> str | None:
    """One nested run for an evaluated model under `parent` (`run`: label, strategy, model,
    seed, alpha, evals {benchmark: dir}, optional train_config/train_summary/train_out);
    returns its id. A finished child for the same label and seed is reused; unfinished ones
    (an earlier attempt's) are deleted first."""
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


def finish_parent(parent: dict, report: dict) -> str:
    """Log the report (markdown, PNGs, compare.json) and the verdict's claims as tags to the
    parent and close it; returns its URL."""
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
