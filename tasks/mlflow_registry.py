"""The MLflow model registry: log a retriever, resolve `models:/` URIs, and the promotion gate.

- `log_retriever(hf_dir, ...)` logs the HF + sentence-transformers model directory with
  MLflow's sentence-transformers flavor (a copy of the directory as it is; its pyfunc
  `predict` embeds strings, param `prompt_name` = "query" | "passage") and registers it
  as a new version of `hybrid-retriever`.
- `promote(name, version, metric, margin)`: the version gets alias `champion` only if its
  run's `metric` beats the current champion's by at least `margin` (or there is no
  champion yet); otherwise it gets `challenger`.
- `resolve_models_uri("models:/hybrid-retriever@champion")` downloads that version's HF
  directory once, as `hybrid.paths.cache_dir()/mlflow-models/<name>/v<version>` (that
  directory is the HF directory), and returns it. `install(register_resolver)` hands it to `hybrid.model` for the `models:/` prefix
  (the `hybrid.resolvers` entry point), so `hybrid evaluate --model models:/...` works.

The tracking server comes from `MLFLOW_TRACKING_URI` (see `python -m infra.stack env`).
Only this package imports mlflow; `hybrid/` never does.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from hybrid.evaluation.metric_names import DEFAULT_PROMOTION_METRIC

MODEL_NAME = "hybrid-retriever"
CHAMPION = "champion"
CHALLENGER = "challenger"
PROMPT_PARAM = "prompt_name"
#: Where a version's HF directory lies in its model artifacts: the sentence-transformers
#: flavor's data dir; versions logged before as a pyfunc keep it under artifacts/<dir name>/.
ST_DATA = "model.sentence_transformer"
_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[\w-]+)|/(?P<version>\d+))/?$")


def mlflow_client():
    from mlflow import MlflowClient

    return MlflowClient()


# ------------------------------------------------------ the sentence-transformers model
def encode_signature(dim: int):
    """Input: strings (a list, or a one-column frame); param `prompt_name` ("query" or
    "passage", default "query") picks the prefix; output: float32 rows [n, dim]."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

    return ModelSignature(inputs=Schema([ColSpec("string")]),
                          outputs=Schema([TensorSpec(np.dtype("float32"), (-1, dim))]),
                          params=ParamSchema([ParamSpec(PROMPT_PARAM, "string", "query")]))


def _model_dim(hf_dir: Path) -> int:
    import json

    cfg = json.loads((Path(hf_dir) / "config.json").read_text())
    return int(cfg.get("hidden_size") or cfg.get("dim") or cfg["d_model"])


def _sentence_transformer(hf_dir: Path):
    """`hf_dir` loaded as a SentenceTransformer whose `save` copies `hf_dir` verbatim (the
    flavor calls `model.save(<artifact dir>)`): the registered directory is byte for byte the
    trained one, `hybrid_encoder.json` and weights included, so its weights hash is kept."""
    import shutil

    from sentence_transformers import SentenceTransformer

    from hybrid.errors import HybridError

    if not (hf_dir / "modules.json").is_file():
        raise HybridError(f"model {hf_dir}: no modules.json (not a sentence-transformers "
                          "directory written by hybrid)")
    model = SentenceTransformer(str(hf_dir), device="cpu")
    model.save = lambda path, *a, **kw: shutil.copytree(hf_dir, path, dirs_exist_ok=True)
    return model


def log_retriever(hf_dir: str | Path, name: str = MODEL_NAME, tags: dict | None = None):
    """Log `hf_dir` (a sentence-transformers directory, as `BiEncoder.save` writes) with the
    sentence-transformers flavor as model `model` of the active run, register it under
    `name` and tag the version with `tags`. Returns the new ModelVersion.

    The version loads with `mlflow.sentence_transformers.load_model(uri)` (then
    `encode(texts, prompt_name="query"|"passage")`) and with `mlflow.pyfunc.load_model(uri)`
    (`predict(texts, params={"prompt_name": ...})`, "query" by default); both equal
    `BiEncoder.encode(texts, kind)` for texts within the encoder's per-kind max length."""
    import mlflow.sentence_transformers

    hf_dir = Path(hf_dir)
    info = mlflow.sentence_transformers.log_model(
        _sentence_transformer(hf_dir),
        name="model",
        signature=encode_signature(_model_dim(hf_dir)),
        registered_model_name=name,
        pip_requirements=["hybrid-retriever", "mlflow", "sentence-transformers"],
    )
    client = mlflow_client()
    version = client.get_model_version(name, str(info.registered_model_version))
    for k, v in (tags or {}).items():
        client.set_model_version_tag(name, version.version, k, str(v))
    return version


# ---------------------------------------------------------------------- promotion gate
@dataclass
class Promotion:
    version: str
    alias: str  # "champion" or "challenger"
    metric: str
    value: float
    previous_champion: str | None
    previous_value: float | None
    margin: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def version_metric(name: str, version: str, metric: str) -> float:
    """`metric` of the run that produced model version `version`."""
    client = mlflow_client()
    mv = client.get_model_version(name, str(version))
    metrics = client.get_run(mv.run_id).data.metrics
    if metric not in metrics:
        raise KeyError(f"run {mv.run_id} of {name} v{version} has no metric {metric!r}")
    return float(metrics[metric])


def champion_version(name: str = MODEL_NAME) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(mlflow_client().get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


def promote(version: str, name: str = MODEL_NAME, metric: str = DEFAULT_PROMOTION_METRIC,
            margin: float = 0.005) -> Promotion:
    """Alias `version` as champion when it beats the champion by >= `margin`, else challenger."""
    client = mlflow_client()
    version = str(version)
    value = version_metric(name, version, metric)
    current = champion_version(name)
    prev_value = None
    if current is not None and current != version:
        try:
            prev_value = version_metric(name, current, metric)
        except KeyError:
            prev_value = None  # the champion was judged on another metric: any value beats it
    if current == version:
        alias = CHAMPION
    elif current is None or prev_value is None or value >= prev_value + margin:
        alias = CHAMPION
    else:
        alias = CHALLENGER
    client.set_registered_model_alias(name, alias, version)
    client.set_model_version_tag(name, version, "promotion", alias)
    return Promotion(version, alias, metric, value, current, prev_value, margin)


# -------------------------------------------------------------------- models:/ resolver
def parse_models_uri(uri: str) -> tuple[str, str | None, str | None]:
    """(name, alias, version) of `models:/name@alias` or `models:/name/version`."""
    from hybrid.errors import HybridError

    m = _URI.match(uri.strip())
    if not m:
        raise HybridError(f"model {uri}: expected models:/<name>@<alias> or "
                          "models:/<name>/<version>")
    return m["name"], m["alias"], m["version"]


def resolve_models_uri(uri: str) -> Path:
    """The local HF directory of a registry model (downloaded once, then cached)."""
    from mlflow.exceptions import MlflowException

    from hybrid.errors import HybridError
    from hybrid.io import atomic_path
    from hybrid.paths import cache_dir
    from tasks.mlflow_server import bound_http_retries, network_cause

    name, alias, version = parse_models_uri(uri)
    _require_tracking_uri(uri)
    bound_http_retries()  # a server that is down: one line within seconds, not minutes
    client = mlflow_client()
    try:
        mv = (client.get_model_version_by_alias(name, alias) if alias
              else client.get_model_version(name, version))
    except MlflowException as exc:
        if network_cause(exc) is None and "Max retries exceeded" not in str(exc):
            raise HybridError(f"model {uri}: not in the MLflow registry at "
                              f"{_tracking_uri()} ({exc.error_code})") from exc
        raise HybridError(f"model {uri}: cannot reach the MLflow registry at "
                          f"{_tracking_uri()} (after "
                          f"{os.environ['MLFLOW_HTTP_REQUEST_MAX_RETRIES']} HTTP retries)") from exc
    except Exception as exc:  # server down, connection refused, ...
        raise HybridError(f"model {uri}: cannot reach the MLflow registry at "
                          f"{_tracking_uri()} ({type(exc).__name__})") from exc
    out = cache_dir() / "mlflow-models" / name / f"v{mv.version}"
    if not out.is_dir():
        import shutil

        import mlflow.artifacts

        with atomic_path(out) as tmp:
            download = tmp.parent / "download"
            download.mkdir()
            mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{mv.version}",
                                                dst_path=str(download))
            shutil.move(_hf_dir_in(download, uri, mv.version), tmp)
    if (out / "config.json").is_file():
        return out
    return _hf_dir_in(out, uri, mv.version)  # a cache entry written before: all artifacts


def _hf_dir_in(out: Path, uri: str, version: str) -> Path:
    """The HF directory inside downloaded model artifacts `out`: the sentence-transformers
    flavor's data dir, else (a version logged as a pyfunc) the one under artifacts/."""
    from hybrid.errors import HybridError

    if (out / ST_DATA / "config.json").is_file():
        return out / ST_DATA
    found = sorted(p.parent for p in (out / "artifacts").glob("*/config.json"))
    if len(found) != 1:
        raise HybridError(f"model {uri}: version {version} holds no HF model directory "
                          "(not logged by hybrid)")
    return found[0]


def _require_tracking_uri(uri: str) -> None:
    """Refuse MLflow's implicit default (a new ./mlflow.db in the working directory)."""
    from mlflow.tracking._tracking_service.utils import is_tracking_uri_set

    from hybrid.errors import HybridError

    if not is_tracking_uri_set():
        raise HybridError(f"model {uri}: MLFLOW_TRACKING_URI is not set (start the stack and "
                          'run: eval "$(python -m infra.stack env)")')


def _tracking_uri() -> str:
    import mlflow

    return mlflow.get_tracking_uri()


def install(register_resolver) -> None:
    """Entry point `hybrid.resolvers`: add the `models:/` scheme to `hybrid.model`."""
    register_resolver("models:/", resolve_models_uri)
