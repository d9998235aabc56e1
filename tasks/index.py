"""Prefect tasks of the champion's search index (flow `hybrid-index`, flows/index.py).

- `pin_model(model)`: a registry spec `models:/<name>@<alias>` pinned to the version the
  alias names now, `models:/<name>/<version>`, with {"name", "version", "alias"} for the
  manifest; any other model spec is returned as it is (registry None).
- `build_search_index(model, corpus, index_dir, kind)`: `hybrid.index.build_index` of that
  pinned model (the directory is swapped in whole, so a running `hybrid serve --index DIR`
  switches to it without dropping a request); skipped when DIR's manifest already records
  the same model weights, corpus content and kind.
- `follow_champion(index, version)`: the pipeline's trigger. `index` = {"corpus": PATH,
  "dir": DIR, "kind": "flat", "model": "models:/hybrid-retriever@champion", "deployment":
  "hybrid-index/champion"} (corpus and dir required); when `version` is the champion now
  and DIR does not hold it yet, a run of the deployment is started (not waited for).

Relative corpus and index paths are resolved in the flow run's working directory (the
project root for the deployments of prefect.yaml).
"""

from __future__ import annotations

from pathlib import Path

from prefect import task

from tasks.mlflow_registry import CHAMPION, MODEL_NAME, parse_models_uri
from tasks.mlflow_server import tracking_server

INDEX_DEPLOYMENT = "hybrid-index/champion"
DEFAULT_MODEL = f"models:/{MODEL_NAME}@{CHAMPION}"
INDEX_KEYS = {"corpus", "dir", "kind", "model", "deployment"}


def _manifest(index_dir: Path) -> dict | None:
    """The manifest of `index_dir`, or None where there is no index yet."""
    from hybrid.errors import HybridError
    from hybrid.index import read_manifest

    try:
        return read_manifest(index_dir)[0]
    except HybridError:
        return None


@task
@tracking_server("looking up the registry model")
def pin_model(model: str = DEFAULT_MODEL) -> tuple[str, dict | None]:
    """(spec to build with, registry facts or None); see the module docstring."""
    if not model.startswith("models:/"):
        return model, None
    from tasks.mlflow_registry import mlflow_client

    name, alias, version = parse_models_uri(model)
    if alias:
        version = str(mlflow_client().get_model_version_by_alias(name, alias).version)
    return f"models:/{name}/{version}", {"name": name, "version": version, "alias": alias}


def up_to_date(index_dir: str | Path, model_dir: str | Path, corpus: str | Path,
               kind: str) -> bool:
    """True when `index_dir` holds an index of these model weights (every file's hash),
    this corpus content and this kind."""
    from hybrid.evaluation.encode import model_fingerprint
    from hybrid.index.corpus import file_sha256

    m = _manifest(Path(index_dir))
    return (m is not None and m["index"]["kind"] == kind
            and m["model"]["sha256"] == model_fingerprint(model_dir)
            and m.get("corpus", {}).get("sha256") == file_sha256(corpus))


@task
def build_search_index(model: str, registry: dict | None, corpus: str, index_dir: str,
                       kind: str = "flat", shards: int = 1) -> dict:
    """Build (or keep) the index of `model` (a pinned spec) over `corpus` in `index_dir`;
    returns {"index_dir", "built" (False: it was up to date), "manifest"}."""
    from hybrid.index import build_index
    from hybrid.model import resolve_model

    model_dir = resolve_model(model)
    built = not up_to_date(index_dir, model_dir, corpus, kind)
    if built:
        build_index(model, corpus, index_dir, kind=kind, shards=shards, registry=registry,
                    progress=False)
    return {"index_dir": str(index_dir), "built": built, "manifest": _manifest(Path(index_dir))}


def check_index_config(index: dict | None) -> dict | None:
    """`index` with its defaults filled in (None stays None); HybridError on a bad one."""
    from hybrid.errors import HybridError

    if index is None:
        return None
    if not isinstance(index, dict) or not {"corpus", "dir"} <= set(index) \
            or not set(index) <= INDEX_KEYS:
        raise HybridError("index: expected {\"corpus\": PATH, \"dir\": DIR} and optionally "
                          f"kind, model, deployment; got {index!r}")
    return {"kind": "flat", "model": DEFAULT_MODEL, "deployment": INDEX_DEPLOYMENT, **index}


@task
@tracking_server("checking the champion for the search index")
def follow_champion(index: dict, version: str) -> str | None:
    """Start a run of `index["deployment"]` for the champion's index when `version` (of
    the registry model in `index["model"]`) is the champion now and `index["dir"]` does not
    hold it yet; returns the flow run id, or None when nothing was started."""
    from prefect.deployments import run_deployment

    from tasks.mlflow_registry import champion_version

    index = check_index_config(index)
    name, _, _ = parse_models_uri(index["model"])
    if champion_version(name) != str(version):
        return None
    m = _manifest(Path(index["dir"]))
    held = ((m or {}).get("model") or {}).get("registry") or {}
    if (held.get("name"), str(held.get("version"))) == (name, str(version)):
        return None
    run = run_deployment(index["deployment"], timeout=0, parameters={
        "corpus": str(Path(index["corpus"]).resolve()),
        "index_dir": str(Path(index["dir"]).resolve()),
        "kind": index["kind"], "model": index["model"]})
    return str(run.id)
