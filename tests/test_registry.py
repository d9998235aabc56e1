"""The MLflow registry against a real tracking server on 127.0.0.1: sentence-transformers
logging with an encode signature, the promotion gate, and `models:/` URIs resolved for hybrid."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hybrid.errors import HybridError
from infra.stack import Stack, free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
METRIC = "xquad_r.mAP.multi"


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    stack = Stack(tmp_path_factory.mktemp("registry") / "state")
    stack.ports({"prefect": free_port(), "mlflow": free_port(), "ray": free_port()})
    stack.start("mlflow")
    try:
        stack.wait("mlflow")
        uri = stack.env()["MLFLOW_TRACKING_URI"]
        old = os.environ.get("MLFLOW_TRACKING_URI")
        os.environ["MLFLOW_TRACKING_URI"] = uri
        import mlflow

        mlflow.set_tracking_uri(uri)
        yield uri
    finally:
        if old is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old
        stack.down(log=lambda _: None)


@pytest.fixture(scope="module")
def versions(mlflow_server, tmp_path_factory):
    """Four tiny models logged in order with the given promotion metric; their promotions."""
    import mlflow

    from hybrid.model import make_tiny_model
    from tasks.mlflow_registry import log_retriever, promote

    mlflow.set_experiment("test-registry")
    out = {}
    for seed, value in [(1, 0.50), (2, 0.40), (3, 0.503), (4, 0.60)]:
        d = make_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=seed)
        with mlflow.start_run():
            mlflow.log_metric(METRIC, value)
            mv = log_retriever(d, tags={"seed": seed})
        out[seed] = (mv.version, d, promote(mv.version, metric=METRIC, margin=0.005))
    return out


def test_promotion_gate_keeps_the_best_champion(versions):
    from mlflow import MlflowClient

    from tasks.mlflow_registry import MODEL_NAME

    (v1, _, p1), (v2, _, p2), (v3, _, p3), (v4, _, p4) = (versions[s] for s in (1, 2, 3, 4))
    assert p1.alias == "champion" and p1.previous_champion is None
    assert p2.alias == "challenger" and p2.previous_champion == v1  # worse
    assert p3.alias == "challenger" and p3.previous_value == pytest.approx(0.50)  # < margin
    assert p4.alias == "champion" and p4.previous_champion == v1
    client = MlflowClient()
    assert client.get_model_version_by_alias(MODEL_NAME, "champion").version == v4
    assert client.get_model_version_by_alias(MODEL_NAME, "challenger").version == v3
    assert client.get_model_version(MODEL_NAME, v2).tags["promotion"] == "challenger"
    assert client.get_model_version(MODEL_NAME, v4).tags["seed"] == "4"


def test_models_uri_resolves_to_the_champions_weights(versions, monkeypatch, tmp_path):
    from hybrid.encoder import BiEncoder
    from hybrid.model.resolve import _RESOLVERS, register_resolver
    from tasks.mlflow_registry import install, resolve_models_uri

    monkeypatch.setenv("HYBRID_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("hybrid.model.resolve._RESOLVERS", dict(_RESOLVERS))
    install(register_resolver)
    _, champion_dir, _ = versions[4]
    got = resolve_model_path = resolve_models_uri("models:/hybrid-retriever@champion")
    assert (got / "model.safetensors").read_bytes() == \
        (champion_dir / "model.safetensors").read_bytes()
    assert resolve_models_uri("models:/hybrid-retriever/" + versions[4][0]) == resolve_model_path
    texts = ["Wie alt ist die Erde?", "How old is the Earth?"]
    a = BiEncoder.from_pretrained("models:/hybrid-retriever@champion").encode(
        texts, "query", show_progress=False)
    b = BiEncoder.from_pretrained(champion_dir).encode(texts, "query", show_progress=False)
    np.testing.assert_allclose(a, b, atol=1e-6)
    with pytest.raises(HybridError, match="not in the MLflow registry"):
        resolve_models_uri("models:/hybrid-retriever@nosuchalias")
    with pytest.raises(HybridError, match="expected models:/"):
        resolve_models_uri("models:/")


def test_pyfunc_model_embeds_with_its_signature(versions):
    import mlflow.pyfunc
    import pandas as pd

    from hybrid.encoder import BiEncoder

    model = mlflow.pyfunc.load_model("models:/hybrid-retriever@champion")
    sig = model.metadata.signature
    assert sig.params.params[0].name == "prompt_name"
    texts = ["Quelle est la capitale ?", "Paris ist die Hauptstadt."]
    got = model.predict(pd.DataFrame({"text": texts}), params={"prompt_name": "passage"})
    want = BiEncoder.from_pretrained(versions[4][1]).encode(texts, "passage",
                                                           show_progress=False)
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-6)


def test_cli_encodes_with_a_registry_model(versions, tmp_path, mlflow_server):
    """`hybrid encode` reaches the registry through the `hybrid.resolvers` entry point."""
    eps = importlib.metadata.entry_points(group="hybrid.resolvers")
    assert any(ep.value == "tasks.mlflow_registry:install" for ep in eps)
    src = tmp_path / "texts.txt"
    src.write_text("one\ntwo\nthree\n", encoding="utf-8")
    out = tmp_path / "emb.npy"
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server,
           "HYBRID_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-m", "hybrid", "encode", "--model",
                        "models:/hybrid-retriever@champion", "--input", str(src),
                        "--kind", "passage", "--out", str(out)],
                       capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert np.load(out).shape == (3, 32)
