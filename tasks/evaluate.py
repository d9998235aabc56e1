"""Evaluation tasks, each writing under `<results>/eval/<benchmark>/<key>/`:

- `resolve_model_task`: a local model dir for any model spec (`models:/` URIs from the
  MLflow registry; known baselines with their pooling and prefixes);
- LAReQA: `encode_benchmark_task` fills hybrid's embedding cache (sharded Ray tasks);
  `evaluation_matrix` then reads the embeddings from that cache, computes every setting and
  writes metrics.json, map_matrix.csv, map_matrix.png and report.md;
- every other benchmark (`hybrid evaluate --benchmark NAME`): `benchmark_task` over
  `hybrid.evaluation.run_benchmark` (Tatoeba, bitext, MIRACL, TREC), `mteb_task` over
  `run_mteb`; each writes report.md and metrics.json.

Each returns {"benchmark", "out", "summary"} and is cached on the model's and the data's
content, its arguments and the library code it runs.
"""

from __future__ import annotations

import threading
from pathlib import Path

from prefect import task
from prefect.cache_policies import TASK_SOURCE, CacheKeyFnPolicy

from tasks.hashing import dict_hash, library_hash, source_hash, tree_hash


def _eval_key(ctx, p) -> str:
    return dict_hash({"model": tree_hash(p["model_dir"]), "bench": tree_hash(p["bench_dir"]),
                      "benchmark": p["benchmark"], "split": p.get("split", "all"),
                      "code": library_hash("evaluation", "encoder.py", "data"),
                      "languages": p.get("languages"), "results": str(Path(p["results_dir"]).resolve())})


_IMPORTS = threading.Lock()


def _import_transformers() -> None:
    """Import transformers' classes once under a lock: its lazy module is not thread-safe,
    and mapped tasks start in parallel threads."""
    with _IMPORTS:
        from transformers import AutoModel, AutoTokenizer  # noqa: F401


@task(retries=2, retry_delay_seconds=5, task_run_name="resolve-{model}")
def resolve_model_task(model: str) -> str:
    """A local HF dir for `model` (a dir, `me5-small`, an HF id, or a `models:/` URI); a
    known baseline (`hybrid.model.baselines`) as its overlay with its pooling and prefixes."""
    if model.startswith("models:/"):
        from tasks.registry import resolve_models_uri

        return str(resolve_models_uri(model))
    from hybrid.model import resolve_model
    from hybrid.model.baselines import with_baseline_settings

    return str(resolve_model(with_baseline_settings(model)))


def _load(benchmark: str, bench_dir: str, split: str, languages):
    from hybrid.evaluation import load_eval_benchmark

    return load_eval_benchmark(benchmark, bench_dir, split=split, languages=languages)


@task(cache_policy=TASK_SOURCE + CacheKeyFnPolicy(
    cache_key_fn=lambda ctx, p: "encode-" + _eval_key(ctx, p)), persist_result=True,
    task_run_name="encode-{benchmark}")
def encode_benchmark_task(model_dir: str, benchmark: str, bench_dir: str, results_dir: str,
                          split: str = "all", languages: list[str] | None = None,
                          shards: int = 1) -> dict:
    """Embed the benchmark's questions and candidates in `shards` Ray tasks (cached)."""
    _import_transformers()
    from hybrid.evaluation import encode_benchmark

    b = _load(benchmark, bench_dir, split, languages)
    q, c = encode_benchmark(model_dir, b, shards=shards, progress=True)
    return {"benchmark": benchmark, "questions": len(q.ids), "candidates": len(c.ids)}


@task(cache_policy=TASK_SOURCE + CacheKeyFnPolicy(cache_key_fn=_eval_key), persist_result=True,
      task_run_name="matrix-{benchmark}")
def evaluation_matrix(model_dir: str, benchmark: str, bench_dir: str, results_dir: str,
                      split: str = "all", languages: list[str] | None = None) -> dict:
    """All settings' metrics and the report; returns {"benchmark", "out", "summary"}."""
    _import_transformers()
    from hybrid.evaluation import evaluate

    key = _eval_key(None, {"model_dir": model_dir, "bench_dir": bench_dir,
                           "benchmark": benchmark, "split": split, "languages": languages,
                           "results_dir": results_dir})
    out = _eval_dir(results_dir, benchmark, key)
    if not (out / "metrics.json").is_file():
        evaluate(model_dir, benchmark, bench_dir, out, split=split, languages=languages)
    return _read_result(benchmark, out)


def _eval_dir(results_dir: str, benchmark: str, key: str) -> Path:
    """`<results>/eval/<benchmark>/<key[:16]>`, the name checked before it becomes a path."""
    from hybrid.paths import validate_name

    return Path(results_dir) / "eval" / validate_name(benchmark, where="benchmark") / key[:16]


def _read_result(benchmark: str, out: Path) -> dict:
    import json

    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    return {"benchmark": benchmark, "out": str(out), "summary": metrics["summary"]}


def _benchmark_key(ctx, p) -> str:
    return dict_hash({"model": tree_hash(p["model_dir"]), "benchmark": p["benchmark"],
                      "data": source_hash(p.get("source") or ""),
                      "languages": p.get("languages"), "directions": p.get("directions", "xx-en"),
                      "code": library_hash("evaluation", "encoder.py", "data", "model"),
                      "results": str(Path(p["results_dir"]).resolve())})


@task(cache_policy=TASK_SOURCE + CacheKeyFnPolicy(cache_key_fn=_benchmark_key),
      persist_result=True, task_run_name="benchmark-{benchmark}")
def benchmark_task(model_dir: str, benchmark: str, results_dir: str, source: str | None = None,
                   languages: list[str] | None = None, directions: str = "xx-en",
                   shards: int = 1) -> dict:
    """`hybrid evaluate --benchmark NAME` (`run_benchmark`: tatoeba, bitext, miracl, trec)
    into `<results>/eval/<benchmark>/<key>/`; returns {"benchmark", "out", "summary"}."""
    _import_transformers()
    from hybrid.evaluation import run_benchmark

    key = _benchmark_key(None, {"model_dir": model_dir, "benchmark": benchmark, "source": source,
                                "languages": languages, "directions": directions,
                                "results_dir": results_dir})
    out = _eval_dir(results_dir, benchmark, key)
    if not (out / "metrics.json").is_file():
        run_benchmark(benchmark, model_dir, out, source=source, languages=languages,
                      directions=directions, shards=shards)
    return _read_result(benchmark, out)


def _task_file(task: str) -> str | None:
    return task.rsplit(":", 1)[0] if ".py:" in task else None


def _mteb_key(ctx, p) -> str:
    import importlib.metadata

    try:
        version = importlib.metadata.version("mteb")
    except importlib.metadata.PackageNotFoundError:
        version = None
    return dict_hash({"model": tree_hash(p["model_dir"]), "benchmark": "mteb",
                      "tasks": [[t, source_hash(_task_file(t)) if _task_file(t) else None]
                                for t in p["tasks"]],
                      "mteb": version, "code": library_hash("evaluation", "encoder.py", "model"),
                      "results": str(Path(p["results_dir"]).resolve())})


@task(cache_policy=TASK_SOURCE + CacheKeyFnPolicy(cache_key_fn=_mteb_key), persist_result=True,
      task_run_name="benchmark-mteb")
def mteb_task(model_dir: str, tasks: list[str], results_dir: str) -> dict:
    """`hybrid mteb` (`run_mteb`; task names or FILE.py:Class) into
    `<results>/eval/mteb/<key>/`; returns {"benchmark": "mteb", "out", "summary"}."""
    _import_transformers()
    from hybrid.evaluation.mteb_adapter import parse_tasks, run_mteb

    key = _mteb_key(None, {"model_dir": model_dir, "tasks": tasks, "results_dir": results_dir})
    out = _eval_dir(results_dir, "mteb", key)
    if not (out / "metrics.json").is_file():
        run_mteb(model_dir, parse_tasks(",".join(tasks)), out)
    return _read_result("mteb", out)
