"""The pipeline end to end through real services on 127.0.0.1: a Prefect server and a process
worker, an MLflow tracking server and a Ray head (infra/stack.py), `prefect deploy --all`
from prefect.yaml, and flow runs of 'hybrid-pipeline/tiny' (created through Prefect's API, as
`prefect deployment run` does) with the tiny model on a three-language slice of XQuAD-R (and the
MLQA-R sample). The stack and the first run are the session's (tests/conftest.py: `deployed`,
`pipeline_run`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
EXPERIMENT = "hybrid-pipeline-tiny"


def _runs():
    import mlflow

    exp = mlflow.get_experiment_by_name(EXPERIMENT)
    return mlflow.MlflowClient().search_runs([exp.experiment_id]) if exp else []


def test_pipeline_run_completes_and_logs_everything(pipeline_run, deployed):
    from mlflow import MlflowClient

    tasks = pipeline_run["tasks"]
    assert all(state == "Completed" for state in tasks.values()), tasks
    names = sorted(tasks)
    for step in ("prepare-xquad-r", "prepare-mlqa-r", "build_pairs_table", "train_model",
                 "encode-xquad-r", "encode-mlqa-r", "matrix-xquad-r", "matrix-mlqa-r",
                 "log_and_register"):
        assert sum(n.startswith(step) for n in names) == 1, (step, names)

    (run,) = _runs()
    m = run.data.metrics
    for key in ("xquad_r.mAP.mono", "xquad_r.mAP.cross", "xquad_r.mAP.multi",
                "xquad_r.language_bias", "xquad_r.mAP.de-en", "xquad_r.mAP.en-multi",
                "mlqa_r.mAP.multi"):
        assert 0 <= m[key] <= (1 if "mAP" in key else 1e9), key
    assert run.data.params["train.data.strategy"] == "hybrid"
    assert run.data.params["train.run.workers"] == "2"
    client = MlflowClient()
    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.json", "train_summary.json", "eval"} <= top
    for bench in ("xquad-r", "mlqa-r"):
        files = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, f"eval/{bench}")}
        assert {"report.md", "map_matrix.png", "metrics.json", "map_matrix.csv"} <= files

    (version,) = client.search_model_versions("name='hybrid-retriever'")
    assert version.run_id == run.info.run_id
    import mlflow.models

    info = mlflow.models.get_model_info("models:/hybrid-retriever/1")
    assert {"python_function", "sentence_transformers"} <= set(info.flavors)
    assert info.signature.params.params[0].name == "prompt_name"
    assert client.get_model_version_by_alias("hybrid-retriever", "champion").version == "1"

    latest = pipeline_run["latest"]
    assert Path(latest["reports"]["xquad-r"]).is_file()
    assert latest["mlflow"]["run_id"] == run.info.run_id


def test_identical_rerun_hits_every_cache_and_adds_no_version(pipeline_run, deployed):
    from mlflow import MlflowClient

    second = deployed.run("hybrid-pipeline/tiny", overrides={"model.model": deployed.model},
                          results_dir=pipeline_run["results"])
    assert second["tasks"] and all(s == "Cached" for s in second["tasks"].values()), \
        second["tasks"]
    assert len(_runs()) == 1
    assert len(MlflowClient().search_model_versions("name='hybrid-retriever'")) == 1


def test_weekly_retrain_on_unchanged_data_registers_nothing_new(pipeline_run, deployed):
    """`hybrid-retrain/weekly` (here with the tiny settings): every step is a cache hit but
    the log, which goes to its own experiment and links the already registered version."""
    import mlflow
    from mlflow import MlflowClient

    tiny = {"profile": "tiny", "overrides": {"run.workers": 2, "model.model": deployed.model},
            "sources": ["xquad-r:../shared/data/lareqa/xquad-r?langs=en,de,es"],
            "benchmarks": {"xquad-r": "../shared/data/lareqa/xquad-r",
                           "mlqa-r": "../shared/data/lareqa/mlqa-r-sample"},
            "results_dir": pipeline_run["results"]}
    retrain = deployed.run("hybrid-retrain/weekly", languages=["en", "de", "es"], **tiny)
    states = {n: s for n, s in retrain["tasks"].items() if not n.startswith("log_and_register")}
    assert states and all(s == "Cached" for s in states.values()), retrain["tasks"]
    exp = mlflow.get_experiment_by_name("hybrid-retrain")
    (run,) = MlflowClient().search_runs([exp.experiment_id])
    assert run.data.tags["hybrid.model_version"] == "1"
    assert len(MlflowClient().search_model_versions("name='hybrid-retriever'")) == 1


def test_model_short_of_the_margin_is_challenger(pipeline_run, deployed):
    """Another strategy, with a margin no model can clear: registered, but not champion."""
    from mlflow import MlflowClient

    deployed.run("hybrid-pipeline/tiny", overrides={"model.model": deployed.model, "data.strategy": "x-y"},
                 results_dir=pipeline_run["results"], promotion_margin=1.0)
    client = MlflowClient()
    assert len(client.search_model_versions("name='hybrid-retriever'")) == 2
    assert client.get_model_version_by_alias("hybrid-retriever", "champion").version == "1"
    assert client.get_model_version_by_alias("hybrid-retriever", "challenger").version == "2"


def test_evaluate_deployment_pulls_the_champion_from_the_registry(pipeline_run, deployed):
    """`hybrid-evaluate/champion` resolves models:/hybrid-retriever@champion and reproduces
    the pipeline's own evaluation of that model."""
    import mlflow

    deployed.run("hybrid-evaluate/champion", languages=["en", "de", "es"],
                 results_dir=deployed.results("evaluate"))
    exp = mlflow.get_experiment_by_name("hybrid-evaluate")
    (run,) = mlflow.MlflowClient().search_runs([exp.experiment_id])
    assert run.data.params["model"] == "models:/hybrid-retriever@champion"
    (trained,) = [r for r in _runs() if r.data.tags.get("hybrid.model_version") == "1"]
    for key in ("xquad_r.mAP.multi", "xquad_r.mAP.de-en", "mlqa_r.mAP.multi"):
        assert run.data.metrics[key] == pytest.approx(trained.data.metrics[key], abs=1e-6), key


def test_weekly_schedule_creates_scheduled_runs(deployed):
    """The server's scheduler turns retrain/weekly's cron into SCHEDULED flow runs (it failed
    on every cycle with SQLAlchemy 2.1, which Prefect 3.8's server does not support)."""
    import time

    deadline = time.monotonic() + 120
    runs: list = []
    while time.monotonic() < deadline:
        r = subprocess.run([sys.executable, "-m", "prefect", "flow-run", "ls", "--flow-name",
                            "hybrid-retrain", "--state", "SCHEDULED", "-o", "json"],
                           cwd=ROOT, env=deployed.env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr[-2000:]
        runs = json.loads(r.stdout or "[]")
        if runs:
            break
        time.sleep(5)
    assert runs, "no scheduled run of hybrid-retrain/weekly appeared within 120 s"
    assert all(run["state_type"] == "SCHEDULED" for run in runs)
    log = Path(deployed.stack.state) / "logs" / "prefect.log"
    assert "Can't evaluate bulk DML" not in log.read_text(errors="replace")
