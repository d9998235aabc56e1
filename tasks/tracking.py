"""Log a pipeline run to MLflow and register its model, then apply the promotion gate.

One MLflow experiment per flow. A run holds: params (the full config, flattened), metrics
(`flat_metrics`, per benchmark B, e.g. `xquad_r`, `tatoeba`: `B.<metric>.<group>` for every
summary group of its metrics.json, `B.language_bias`, and each setting's headline metric
`B.<headline>.<setting>`, e.g. `xquad_r.mAP.de-en`, `tatoeba.Acc1.de-en`), artifacts
(`config.json`, `train_summary.json`, `eval/<benchmark>/{report.md, metrics.json}` and for
LAReQA `map_matrix.png`, `map_matrix.csv`) and the model (sentence-transformers flavor)
registered as `hybrid-retriever`. `log_evaluation` logs an evaluation-only run the same way.

The task is cached on its inputs' content, and the run is tagged with that key: the same
inputs never log a second run, even with Prefect's cache gone. Versions are tagged with the
hash of their weights: a run whose model is registered already (a retrain on unchanged
data, in its own experiment) is linked to that version instead of registering a copy.

An unreachable tracking server fails the task in bounded time, with one line naming it:
MLflow's own HTTP retries are bounded and the task is retried twice on that error only
(`tasks/tracking_server.py`); an attempt that died mid-logging leaves its run (tagged with the
key, no version yet), which the next attempt finishes instead of starting another.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from prefect import task
from prefect.cache_policies import TASK_SOURCE, CacheKeyFnPolicy

from tasks.hashing import dict_hash, tree_hash
from tasks.registry import DEFAULT_PROMOTION_METRIC, MODEL_NAME
from tasks.tracking_server import (
    TRACKING_RETRIES,
    TRACKING_RETRY_DELAY_S,
    retry_if_unreachable,
    tracking_server,
)

#: MLflow names of metrics.json's metric keys (others are used as they are).
METRIC_NAMES = {"map": "mAP", "r@1": "R1", "r@10": "R10", "mrr@10": "MRR10",
                "ndcg@10": "nDCG10", "r@100": "R100", "accuracy@1": "Acc1",
                "main_score": "main"}
#: The files of an evaluation directory logged as artifacts (those it has).
EVAL_ARTIFACTS = ("report.md", "map_matrix.png", "map_matrix.csv", "metrics.json")
KEY_TAG = "hybrid.key"
MODEL_HASH_TAG = "hybrid.model_hash"


def bench_prefix(benchmark: str) -> str:
    return benchmark.replace("-", "_")


def _key(part: str) -> str:
    """A metric-name part with characters MLflow refuses replaced by '_'."""
    return re.sub(r"[^\w\-./ ]", "_", str(part))


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def flat_metrics(benchmark: str, metrics: dict) -> dict[str, float]:
    """MLflow metrics of one benchmark's metrics.json (None values left out): every summary
    group's metrics `B.<metric>.<group>` (LAReQA: mono, cross, multi; Tatoeba: xx-en, en-xx;
    MIRACL: mono; bitext, TREC, MTEB: all), a number in the summary as `B.<name>` (LAReQA's
    language_bias), and each setting's headline metric (`HEADLINE[benchmark]`: mAP,
    accuracy@1, nDCG@10, the MTEB main score) as `B.<headline>.<setting>`."""
    from hybrid.evaluation.benchmarks import HEADLINE

    b = bench_prefix(benchmark)
    out: dict[str, float] = {}
    for group, vals in (metrics.get("summary") or {}).items():
        if isinstance(vals, dict):
            for m, v in vals.items():
                if _number(v):
                    out[f"{b}.{METRIC_NAMES.get(m, _key(m))}.{_key(group)}"] = float(v)
        elif _number(vals):
            out[f"{b}.{_key(group)}"] = float(vals)
    head = HEADLINE.get(benchmark, "map")
    for setting, vals in (metrics.get("settings") or {}).items():
        if vals and _number(vals.get(head)):
            out[f"{b}.{METRIC_NAMES.get(head, _key(head))}.{_key(setting)}"] = float(vals[head])
    return out


def log_evals(client, run_id: str, evals: list[dict]) -> dict[str, float]:
    """Log each evaluation's files (`EVAL_ARTIFACTS`) under `eval/<benchmark>/` of run
    `run_id`; returns the MLflow metrics of all of them (`flat_metrics`), not yet logged."""
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


def _log_key(ctx, p) -> str:
    return dict_hash({"experiment": p["experiment"], "config": p["config"],
                      "model": tree_hash(p["train"]["model_dir"]),
                      "evals": {e["benchmark"]: tree_hash(Path(e["out"]) / "metrics.json")
                                for e in p["evals"]},
                      "promotion": [p.get("promotion_metric"), p.get("promotion_margin")]})


@task(cache_policy=TASK_SOURCE + CacheKeyFnPolicy(cache_key_fn=_log_key), persist_result=True,
      retries=TRACKING_RETRIES, retry_delay_seconds=TRACKING_RETRY_DELAY_S,
      retry_condition_fn=retry_if_unreachable)
@tracking_server("logging the run and registering its model")
def log_and_register(experiment: str, config: dict, train: dict, evals: list[dict],
                     promotion_metric: str = DEFAULT_PROMOTION_METRIC,
                     promotion_margin: float = 0.005) -> dict:
    """Log everything to MLflow, register the model, promote; returns run id/url/version/alias."""
    import mlflow

    from hybrid.redact import redact, redact_config
    from tasks.registry import log_retriever, promote

    key = _log_key(None, {"experiment": experiment, "config": config, "train": train,
                          "evals": evals, "promotion_metric": promotion_metric,
                          "promotion_margin": promotion_margin})
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
            model_hash = tree_hash(train["model_dir"])
            same = registered_version(client, model_hash)
            if same is not None:  # these weights are registered already (e.g. a retrain
                # on unchanged data): link the run to that version, register nothing
                promotion = {"version": same.version, "alias": _alias_of(client, same)}
            else:
                mv = log_retriever(train["model_dir"], MODEL_NAME,
                                   tags={"hybrid.key": key, MODEL_HASH_TAG: model_hash,
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


@task
@tracking_server("logging the evaluation")
def log_evaluation(experiment: str, model: str, evals: list[dict]) -> str:
    """One MLflow run in `experiment` for an evaluation without training (`hybrid-evaluate`):
    param `model` and `benchmarks`, the evaluations' metrics and files (`log_evals`);
    returns the run id. An unreachable server fails in bounded time with one line (not
    retried: a retry would log a second run)."""
    import mlflow

    mlflow.set_experiment(experiment)
    with mlflow.start_run() as run:
        mlflow.log_params({"model": model,
                           "benchmarks": json.dumps([e["benchmark"] for e in evals])})
        mlflow.log_metrics(log_evals(mlflow.MlflowClient(), run.info.run_id, evals))
    return run.info.run_id
