"""`hybrid-index`: the search index of the registry's champion over a configured corpus
(deployment `hybrid-index/champion`, started by `hybrid-pipeline` when it promotes a new
champion and its `index` parameter is set).

The alias is pinned to the version it names when the run starts (`models:/<name>/<version>`
in the manifest, with the registry name, version and alias), the index is built with
`hybrid.index.build_index` (Ray-sharded encoding, resumable, the directory swapped in
whole), and a `hybrid serve --index DIR` running on that directory reloads it without
dropping a request. A directory that already holds this model's index of this corpus and
kind is left as it is.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.common import ensure_ray
from tasks.index import DEFAULT_MODEL, build_search_index, pin_model


@flow(name="hybrid-index", log_prints=True)
def index(corpus: str, index_dir: str, kind: str = "flat", model: str = DEFAULT_MODEL,
          shards: int = 1) -> dict:
    """Build the index of `model` (default the champion) over `corpus` (JSONL, Parquet or
    TSV with id, text and optional lang) into `index_dir`; kind: flat, ivf or hnsw; shards:
    Ray encoding tasks. Returns {"index_dir", "built", "manifest"}."""
    log = get_run_logger()
    spec, registry = pin_model(model)
    ensure_ray()
    out = build_search_index(spec, registry, corpus, index_dir, kind, shards)
    m = out["manifest"]
    log.info("%s %s: %s passages, %s, model %s", "built" if out["built"] else "kept",
             index_dir, m["index"]["count"], m["index"]["kind"], m["model"]["spec"])
    return out


if __name__ == "__main__":
    index()
