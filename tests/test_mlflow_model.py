"""The registered retriever follows MLflow's conventions, against a real tracking server on
127.0.0.1: `mlflow.sentence_transformers.load_model`, `mlflow.pyfunc.load_model(...).predict`
and `mlflow models serve --env-manager local` (a real subprocess on a free port) embed like
`BiEncoder` (cosine >= 0.9999), with the "query: "/"passage: " prefix picked by
`prompt_name`; `models:/` URIs still resolve to the trained directory, byte for byte."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from infra.stack import Stack, free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
METRIC = "xquad_r.mAP.multi"
TEXTS = ["Wie alt ist die Erde?", "The Earth is about 4.5 billion years old.",
         "¿Cuál es la capital de Francia?"]
MODEL_URI = "models:/hybrid-retriever@champion"


@pytest.fixture(scope="module")
def champion(tmp_path_factory):
    """A tracking server with the tiny model (seed 5) registered and promoted champion."""
    import mlflow

    from hybrid.model import make_tiny_model
    from tasks.mlflow_registry import log_retriever, promote

    stack = Stack(tmp_path_factory.mktemp("mlflow-model") / "state")
    stack.ports({"prefect": free_port(), "mlflow": free_port(), "ray": free_port()})
    stack.start("mlflow")
    old = os.environ.get("MLFLOW_TRACKING_URI")
    before = mlflow.get_tracking_uri()
    try:
        stack.wait("mlflow")
        uri = stack.env()["MLFLOW_TRACKING_URI"]
        os.environ["MLFLOW_TRACKING_URI"] = uri
        mlflow.set_tracking_uri(uri)
        model_dir = make_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=5)
        mlflow.set_experiment("test-mlflow-model")
        with mlflow.start_run():
            mlflow.log_metric(METRIC, 0.5)
            mv = log_retriever(model_dir)
        assert promote(mv.version, metric=METRIC).alias == "champion"
        yield {"uri": uri, "dir": model_dir, "version": mv.version}
    finally:
        mlflow.set_tracking_uri(before)
        if old is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old
        stack.down(log=lambda _: None)


def _want(model_dir, kind):
    from hybrid.encoder import BiEncoder

    return BiEncoder.from_pretrained(model_dir).encode(TEXTS, kind, show_progress=False)


def _assert_same(got, want):
    got = np.asarray(got, dtype=np.float32)
    assert got.shape == want.shape
    cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cos.min() >= 0.9999, cos


def test_sentence_transformers_flavor_loads_the_champion(champion):
    import mlflow.sentence_transformers

    st = mlflow.sentence_transformers.load_model(MODEL_URI)
    for kind in ("query", "passage"):
        _assert_same(st.encode(TEXTS, prompt_name=kind), _want(champion["dir"], kind))
    # the prefix matters: a query embedding is not the passage embedding
    assert not np.allclose(st.encode(TEXTS, prompt_name="query"),
                           st.encode(TEXTS, prompt_name="passage"), atol=1e-3)


def test_pyfunc_predict_returns_embeddings(champion):
    import mlflow.pyfunc
    import pandas as pd

    model = mlflow.pyfunc.load_model(MODEL_URI)
    sig = model.metadata.signature
    assert [p.name for p in sig.params.params] == ["prompt_name"]
    _assert_same(model.predict(TEXTS), _want(champion["dir"], "query"))  # query by default
    _assert_same(model.predict(pd.DataFrame({"text": TEXTS}), params={"prompt_name": "passage"}),
                 _want(champion["dir"], "passage"))


def test_models_uri_resolves_to_the_logged_directory(champion, monkeypatch, tmp_path):
    from hybrid.encoder import BiEncoder
    from tasks.hashing import tree_hash
    from tasks.mlflow_registry import resolve_models_uri

    monkeypatch.setenv("HYBRID_CACHE", str(tmp_path / "cache"))
    got = resolve_models_uri(MODEL_URI)
    assert got == tmp_path / "cache" / "mlflow-models" / "hybrid-retriever" / \
        f"v{champion['version']}"  # the name hybrid.index's manifest reads the version from
    assert tree_hash(got) == tree_hash(champion["dir"])  # every file, hybrid_encoder.json too
    np.testing.assert_array_equal(
        BiEncoder.from_pretrained(got).encode(TEXTS, "query", show_progress=False),
        _want(champion["dir"], "query"))


def test_versions_logged_as_pyfunc_still_resolve(tmp_path):
    """The layout of versions registered before the flavor change: artifacts/<dir>/."""
    from hybrid.errors import HybridError
    from tasks.mlflow_registry import _hf_dir_in

    (tmp_path / "artifacts" / "model").mkdir(parents=True)
    (tmp_path / "artifacts" / "model" / "config.json").write_text("{}")
    assert _hf_dir_in(tmp_path, MODEL_URI, "1") == tmp_path / "artifacts" / "model"
    with pytest.raises(HybridError, match="holds no HF model directory"):
        _hf_dir_in(tmp_path / "nothing", MODEL_URI, "1")


def _post(url: str, body: dict, timeout: float = 60):
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def test_mlflow_models_serve_answers_embedding_requests(champion, tmp_path):
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    # as in an activated virtualenv: the scoring server is `exec uvicorn` from PATH
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": champion["uri"], "PATH": path}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", MODEL_URI,
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-1500:]
                assert time.monotonic() < deadline, "mlflow models serve not up after 120 s"
                time.sleep(0.5)
        url = f"http://127.0.0.1:{port}/invocations"
        got = _post(url, {"inputs": TEXTS, "params": {"prompt_name": "passage"}})
        _assert_same(got["predictions"], _want(champion["dir"], "passage"))
        got = _post(url, {"inputs": TEXTS})
        _assert_same(got["predictions"], _want(champion["dir"], "query"))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
