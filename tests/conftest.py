"""Shared fixtures: the offline data in ../shared/data (or $HYBRID_DATA), the tiny model, and
one local stack per session (Prefect server and process worker, MLflow, Ray head) with
prefect.yaml deployed, shared by the pipeline, comparison and pipeline-fault tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hybrid.paths import default_data_dir
from infra.stack import CLIENT_ENV


def pytest_configure(config):
    for name in CLIENT_ENV:  # a stack's variables exported in the user's shell (infra/stack.py)
        os.environ.pop(name, None)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = default_data_dir()
    if d is None or not (d / "lareqa" / "xquad-r").is_dir():
        pytest.fail("offline data not found: set HYBRID_DATA or place shared/data beside the checkout")
    return d


@pytest.fixture(scope="session")
def xquad_dir(data_dir: Path) -> Path:
    return data_dir / "lareqa" / "xquad-r"


@pytest.fixture(scope="session")
def mlqa_dir(data_dir: Path) -> Path:
    return data_dir / "lareqa" / "mlqa-r-sample"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session gets its own cache, unless HYBRID_TEST_CACHE points at a shared one
    (the materialized me5-small model is kept there to avoid rebuilding it per session)."""
    import os

    shared = os.environ.get("HYBRID_TEST_CACHE")
    monkeypatch.setenv("HYBRID_CACHE", shared or str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray for the module (encoding uses a running Ray as is)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny deterministic test model (seed 0); modules that need a variant define their own."""
    from hybrid.model import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny")


# ------------------------------------------------------------------------------ the stack
ROOT = Path(__file__).resolve().parent.parent


class Deployed:
    """The session's local stack with every deployment of prefect.yaml and the tiny model
    (seed 0). Tests keep apart by results dir (`results(name)`) and MLflow experiment; the
    registry (`hybrid-retriever`) and Prefect's cache store are shared, as in a real setup."""

    def __init__(self, stack, base: Path, model: Path):
        self.stack, self.base, self.model = stack, base, str(model)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, **self.stack.env()}

    @property
    def mlflow_uri(self) -> str:
        return self.stack.env()["MLFLOW_TRACKING_URI"]

    def results(self, name: str) -> str:
        return str(self.base / "runs" / name)

    @contextlib.contextmanager
    def api(self):
        """A sync Prefect client on this stack's API."""
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: self.stack.env()["PREFECT_API_URL"]}):
            with get_client(sync_client=True) as client:
                yield client

    def start(self, deployment: str, job_env: dict | None = None, **params):
        """Create a flow run of `deployment` for the worker (job_env: extra environment of
        the flow-run process); returns its id without waiting."""
        with self.api() as client:
            dep = client.read_deployment_by_name(deployment)
            fr = client.create_flow_run_from_deployment(
                dep.id, parameters=params, job_variables={"env": job_env} if job_env else None)
        return fr.id

    def flow_run(self, run_id):
        with self.api() as client:
            return client.read_flow_run(run_id)

    def wait(self, run_id, timeout: float = 480):
        """The flow run once it reached a final state (Completed, Failed, Crashed, ...)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            fr = self.flow_run(run_id)
            if fr.state is not None and fr.state.is_final():
                return fr
            time.sleep(1)
        raise AssertionError(f"flow run {run_id} not finished after {timeout:.0f}s: {fr.state}"
                             f"\n--- worker log ---\n{self.worker_log()}")

    def task_runs(self, run_id) -> list:
        """The run's task runs and those of its subflow runs (not the subflows' stand-ins)."""
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterId,
            FlowRunFilterParentFlowRunId,
        )

        with self.api() as client:
            children = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run_id])))
            ids = [run_id] + [c.id for c in children]
            trs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))
        return [t for t in trs if t.flow_run_id != run_id] if children else trs

    def run(self, deployment: str, job_env: dict | None = None, completed: bool = True,
            timeout: float = 480, **params) -> dict:
        """Run `deployment` through the worker to its end (at most `timeout` seconds):
        {"flow_run", "tasks" ({name: state name}), "task_runs", "seconds"}; asserts it
        completed unless `completed=False`."""
        t0 = time.monotonic()
        fr = self.wait(self.start(deployment, job_env, **params), timeout)
        seconds = time.monotonic() - t0
        if completed:
            assert fr.state.is_completed(), f"{fr.state}\n--- worker log ---\n{self.worker_log()}"
        trs = self.task_runs(fr.id)
        return {"flow_run": fr, "tasks": {t.name: t.state.name for t in trs}, "task_runs": trs,
                "seconds": seconds}

    def worker_log(self, tail: int = 6000) -> str:
        return self.stack.log_file("worker").read_text(errors="replace")[-tail:]

    def flow_run_pids(self, run_id) -> list[int]:
        """Processes under this stack's worker that execute flow run `run_id`."""
        from infra.stack import _descendants, _procs

        worker = self.stack.pid("worker")
        assert worker is not None, "the worker is not running"
        found = []
        for pid in sorted(_descendants(worker, _procs())):
            with contextlib.suppress(OSError):
                env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                if f"PREFECT__FLOW_RUN_ID={run_id}".encode() in env:
                    found.append(pid)
        return found


@pytest.fixture(scope="session")
def stack_session(tmp_path_factory):
    """One local stack for the session on free ports, its state under the session's tmp dir,
    a process worker, `prefect deploy --all`; stopped at the session's end."""
    from hybrid.model import make_tiny_model
    from infra.stack import Stack, free_port

    base = tmp_path_factory.mktemp("stack")
    saved = os.environ.get("HYBRID_CACHE")
    os.environ["HYBRID_CACHE"] = str(base / "cache")  # the worker and its flow runs inherit it
    stack = Stack(base / "state")
    try:
        stack.up({"prefect": free_port(), "mlflow": free_port(), "ray": free_port()},
                 log=lambda _: None)
        stack.worker(log=lambda _: None)
        r = subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"],
                           cwd=ROOT, env={**os.environ, **stack.env()}, capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        yield Deployed(stack, base, make_tiny_model(base / "tiny-model", seed=0))
    finally:
        stack.down(log=lambda _: None)
        if saved is None:
            os.environ.pop("HYBRID_CACHE", None)
        else:
            os.environ["HYBRID_CACHE"] = saved


@pytest.fixture
def deployed(stack_session, monkeypatch):
    """The session's stack, with this test's MLflow client pointed at its tracking server."""
    import mlflow.tracking._tracking_service.utils as tracking_utils

    # MLflow's explicitly set URI (None: it reads MLFLOW_TRACKING_URI), restored as it was:
    # a URI left set would send later tests' clients to this stack.
    monkeypatch.setattr(tracking_utils, "_tracking_uri", stack_session.mlflow_uri)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", stack_session.mlflow_uri)
    yield stack_session


@pytest.fixture(scope="session")
def pipeline_run(stack_session) -> dict:
    """`hybrid-pipeline/tiny` run once, uninterrupted (experiment hybrid-pipeline-tiny): the
    run the pipeline tests inspect and the fault tests compare with."""
    import json

    d = stack_session
    out = d.run("hybrid-pipeline/tiny", overrides={"model.model": d.model}, results_dir=d.results("pipeline"))
    latest = json.loads((Path(d.results("pipeline")) / "latest.json").read_text())
    return {**out, "results": d.results("pipeline"), "latest": latest}  # later runs rewrite it
