"""Pipeline faults with real processes and real signals (issue #9), through the session's stack
(tests/conftest.py): the flow-run process SIGKILLed during evaluation and the deployment run
again; the MLflow server down while the flow logs; bad benchmark names before they become paths.

The kill test trains the tiny pipeline afresh into its own results dir (same config as the
session's uninterrupted `pipeline_run`, so its outputs must match that run's); the MLflow
test reuses those outputs under another experiment, so only the logging step runs."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from hybrid.errors import HybridError

DEPLOYMENT = "hybrid-pipeline/tiny"
EVAL_STEPS = ("encode-", "matrix-")
UPSTREAM = ("prepare-xquad-r", "prepare-mlqa-r", "build_pairs_table", "train_model")


def _by_prefix(tasks: dict[str, str], prefix: str) -> str:
    (state,) = [s for n, s in tasks.items() if n.startswith(prefix)]
    return state


def _metrics(latest: dict) -> dict[str, dict]:
    """{benchmark: metrics.json} of the run that wrote `latest` (a latest.json)."""
    return {b: json.loads((Path(p).parent / "metrics.json").read_text())
            for b, p in latest["reports"].items()}


def _comparable(m: dict) -> dict:
    """A metrics.json without what differs between two equal runs (timings, output paths)."""
    return {"summary": m["summary"], "settings": m["settings"],
            "model": m["meta"]["model_fingerprint"], "questions": m["meta"]["questions"],
            "candidates": m["meta"]["candidates"]}


def _files(d: Path) -> dict[str, int]:
    """{relative path: mtime_ns} of every file under `d`."""
    return {p.relative_to(d).as_posix(): p.stat().st_mtime_ns for p in d.rglob("*") if p.is_file()}


def _versions_with(model_dir: str) -> list:
    from mlflow import MlflowClient

    from tasks.hashing import tree_hash
    from tasks.mlflow_registry import MODEL_NAME
    from tasks.mlflow_runs import MODEL_HASH_TAG

    h = tree_hash(model_dir)
    return [v for v in MlflowClient().search_model_versions(f"name='{MODEL_NAME}'")
            if v.tags.get(MODEL_HASH_TAG) == h]


def _runs(experiment: str) -> list:
    import mlflow

    exp = mlflow.get_experiment_by_name(experiment)
    return mlflow.MlflowClient().search_runs([exp.experiment_id]) if exp else []


@pytest.fixture(scope="module")
def killed(stack_session, pipeline_run, tmp_path_factory) -> dict:
    """Start the tiny pipeline into a fresh results dir, SIGKILL its flow-run process once an
    evaluation task runs, then run the deployment again (to completion)."""
    d = stack_session
    params = {"overrides": {"model.model": d.model}, "results_dir": d.results("faults"), "experiment": "faults-kill"}
    # its own embedding cache, so the encoding really runs (and can be caught running)
    job_env = {"HYBRID_CACHE": str(tmp_path_factory.mktemp("faults-cache"))}
    t0 = time.monotonic()
    run_id = d.start(DEPLOYMENT, job_env, **params)
    deadline, caught = time.monotonic() + 420, []
    while not caught and time.monotonic() < deadline:
        trs = d.task_runs(run_id)
        caught = [t.name for t in trs if t.name.startswith(EVAL_STEPS)  # a new task run's state
                  and t.state is not None and t.state.is_running()]  # may still be None
        if not caught:
            state = d.flow_run(run_id).state
            assert state is None or not state.is_final(), f"the run ended before evaluating: {state}"
            time.sleep(0.3)
    assert caught, f"no evaluation task ran within 420 s\n{d.worker_log()}"
    pids = d.flow_run_pids(run_id)  # only processes under this stack's own worker
    parents = {int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1]) for p in pids}
    (target,) = [p for p in pids if p not in parents]  # the one executing the flow
    cmdline = Path(f"/proc/{target}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    os.kill(target, signal.SIGKILL)
    killed_after = time.monotonic() - t0
    before = {t.name: getattr(t.state, "name", None) for t in d.task_runs(run_id)}
    interrupted = sorted(n for n, s in before.items() if s == "Running")
    assert interrupted and all(n.startswith(EVAL_STEPS) for n in interrupted), before
    train_dirs = sorted((Path(params["results_dir"]) / "train").iterdir())
    model_files = _files(train_dirs[0])
    crashed = d.wait(run_id, timeout=120)
    after = {t.name: getattr(t.state, "name", None) for t in d.task_runs(run_id)}
    again = d.run(DEPLOYMENT, job_env, **params)
    print(f"killed pid {target} ({cmdline.strip()}; flow-run pids {pids}) after "
          f"{killed_after:.1f}s while {interrupted} ran; reported {crashed.state.name} "
          f"({crashed.state.message}); its task runs then: {after}; "
          f"re-run {again['seconds']:.1f}s: {again['tasks']}")
    return {"params": params, "job_env": job_env, "interrupted": interrupted, "pids": pids,
            "killed_after": killed_after, "before": before, "after": after,
            "crashed": crashed, "train_dirs": train_dirs, "model_files": model_files,
            "again": again, "reference": pipeline_run}


@pytest.mark.slow
def test_flow_killed_during_evaluation_reruns_from_cache_with_identical_outputs(killed,
                                                                              deployed):
    # the killed run is reported as crashed, not left running
    state = killed["crashed"].state
    assert state.type.value == "CRASHED", state
    assert "-9" in (state.message or ""), state.message
    # its interrupted task runs are never marked done (Prefect leaves them as they were:
    # observed Running), so none of them can be a cache hit
    for name in killed["interrupted"]:
        assert killed["after"][name] in ("Running", "Crashed"), killed["after"]
    # every step finished before the kill is a cache hit in the second run; nothing retrains
    again = killed["again"]["tasks"]
    for step in UPSTREAM:
        assert _by_prefix(killed["before"], step) == "Completed", (step, killed["before"])
        assert _by_prefix(again, step) == "Cached", (step, again)
    assert {n: s for n, s in again.items() if s not in ("Completed", "Cached")} == {}
    for name in killed["interrupted"]:  # what was running when killed ran again
        assert again[name] == "Completed", (name, again)
    train_dirs = sorted((Path(killed["params"]["results_dir"]) / "train").iterdir())
    assert train_dirs == killed["train_dirs"] and len(train_dirs) == 1
    assert _files(train_dirs[0]) == killed["model_files"]  # not one file rewritten
    # the outputs equal those of the session's uninterrupted run of the same config
    latest = json.loads((Path(killed["params"]["results_dir"]) / "latest.json").read_text())
    got, want = _metrics(latest), _metrics(killed["reference"]["latest"])
    assert set(got) == set(want) == {"xquad-r", "mlqa-r"}
    for bench in got:
        assert _comparable(got[bench]) == _comparable(want[bench]), bench
    # one MLflow run, linked to the one registry version holding these weights
    model_dir = str(train_dirs[0] / "model")
    (version,) = _versions_with(model_dir)
    (run,) = _runs(killed["params"]["experiment"])
    assert run.data.tags["hybrid.model_version"] == version.version


@pytest.mark.slow
def test_mlflow_down_fails_within_a_minute_and_rerun_logs_without_retraining(killed, deployed):
    d = deployed
    params = {**killed["params"], "experiment": "faults-mlflow-down"}
    train_dir = killed["train_dirs"][0]
    reports = sorted(Path(params["results_dir"], "eval").rglob("report.md"))
    kept = {**_files(train_dir), **{str(p): p.stat().st_mtime_ns for p in reports}}
    d.stack.stop("mlflow")
    try:
        down = d.run(DEPLOYMENT, killed["job_env"], completed=False, **params)
    finally:
        d.stack.start("mlflow")
        d.stack.wait("mlflow")
    fr, tasks = down["flow_run"], down["tasks"]
    assert fr.state.type.value == "FAILED", fr.state
    (log_task,) = [t for t in down["task_runs"] if t.name.startswith("log_and_register")]
    assert log_task.state.type.value == "FAILED" and log_task.run_count == 3  # 2 retries
    spent = (log_task.end_time - log_task.start_time).total_seconds()
    assert spent < 60, spent
    message = log_task.state.message or ""
    assert f"MLflow tracking server {d.mlflow_uri} unreachable" in message, message
    assert "\n" not in message.strip()
    assert {n: s for n, s in tasks.items() if not n.startswith("log_and_register")} == \
        {n: "Cached" for n in tasks if not n.startswith("log_and_register")}
    assert len(reports) == 2 and \
        {**_files(train_dir), **{str(p): p.stat().st_mtime_ns for p in reports}} == kept
    assert _runs(params["experiment"]) == []

    up = d.run(DEPLOYMENT, killed["job_env"], **params)
    assert _by_prefix(up["tasks"], "train_model") == "Cached"
    assert _by_prefix(up["tasks"], "log_and_register") == "Completed"
    (run,) = _runs(params["experiment"])
    (version,) = _versions_with(str(train_dir / "model"))
    assert run.data.tags["hybrid.model_version"] == version.version
    assert run.data.metrics["xquad_r.mAP.multi"] >= 0
    print(f"mlflow down: log task failed after {spent:.1f}s, flow run {down['seconds']:.1f}s")


def test_dead_tracking_server_is_one_line_error_naming_it(tmp_path, monkeypatch):
    """log_and_register's body against a port nothing listens on: TrackingUnavailable within
    seconds (bounded MLflow HTTP retries), naming the URI; the outputs it was given untouched."""
    import mlflow.tracking._tracking_service.utils as tracking_utils

    from infra.stack import free_port
    from tasks.mlflow_server import HTTP_DEFAULTS, TrackingUnavailable
    from tasks.tracking import log_and_register

    for key in HTTP_DEFAULTS:
        monkeypatch.delenv(key, raising=False)
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setattr(tracking_utils, "_tracking_uri", uri)
    t0 = time.monotonic()
    with pytest.raises(TrackingUnavailable) as err:
        log_and_register.fn("exp", {}, {"model_dir": str(tmp_path), "out": str(tmp_path)}, [])
    assert time.monotonic() - t0 < 20
    assert str(err.value).startswith(f"MLflow tracking server {uri} unreachable while logging")
    assert "refused" in str(err.value) and "\n" not in str(err.value)
    from tasks.tracking import log_evaluation  # hybrid-evaluate's logging: bounded the same way

    t0 = time.monotonic()
    with pytest.raises(TrackingUnavailable, match=f"{uri} unreachable while logging the evaluation"):
        log_evaluation.fn("exp", "me5-small", [])
    assert time.monotonic() - t0 < 20


@pytest.mark.parametrize("name", ["../../etc", "xquad-r/../../x", "", ".hidden", "a" * 65])
def test_benchmark_name_is_validated_before_it_becomes_a_path(name, xquad_dir, tmp_path):
    from tasks.data import prepare_benchmark

    with pytest.raises(HybridError, match="benchmarks: invalid name"):
        prepare_benchmark.fn(name, str(xquad_dir), str(tmp_path / "results"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["../../etc", "tatoeba/../../x", ".hidden"])
def test_evaluation_tasks_validate_the_benchmark_name_before_it_becomes_a_path(name, tmp_path):
    from tasks.evaluate import benchmark_task, evaluation_matrix

    (tmp_path / "model").mkdir()
    for run in (lambda: evaluation_matrix.fn(str(tmp_path / "model"), name, str(tmp_path),
                                             str(tmp_path / "results")),
                lambda: benchmark_task.fn(str(tmp_path / "model"), name, str(tmp_path / "results"))):
        with pytest.raises(HybridError, match="benchmark: invalid name"):
            run()
    assert not (tmp_path / "results").exists()
