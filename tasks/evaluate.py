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

from tasks.caching import cached_task, results_path
from tasks.hashing import library_hash, source_hash, tree_hash


def _eval_key(p: dict) -> dict:
    return {"model": tree_hash(p["model_dir"]), "bench": tree_hash(p["bench_dir"]),
            "benchmark": p["benchmark"], "split": p["split"],
            "code": library_hash("evaluation", "encoder.py", "data"),
            "languages": p["languages"], "results": results_path(p)}


def _eval_area(p: dict) -> Path:
    """`<results>/eval/<benchmark>`, the name checked before it becomes a path."""
    from hybrid.paths import validate_name

    return Path(p["results_dir"]) / "eval" / validate_name(p["benchmark"], where="benchmark")


def _read_result(p: dict, out: Path) -> dict:
    import json

    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    return {"benchmark": p.get("benchmark", "mteb"), "out": str(out), "summary": metrics["summary"]}


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
        from tasks.mlflow_registry import resolve_models_uri

        return str(resolve_models_uri(model))
    from hybrid.model import resolve_model
    from hybrid.model.baselines import with_baseline_settings

    return str(resolve_model(with_baseline_settings(model)))


def _load(benchmark: str, bench_dir: str, split: str, languages):
    from hybrid.evaluation import load_eval_benchmark

    return load_eval_benchmark(benchmark, bench_dir, split=split, languages=languages)


@cached_task(_eval_key, prefix="encode-", task_run_name="encode-{benchmark}")
def encode_benchmark_task(model_dir: str, benchmark: str, bench_dir: str, results_dir: str,
                          split: str = "all", languages: list[str] | None = None,
                          shards: int = 1) -> dict:
    """Embed the benchmark's questions and candidates in `shards` Ray tasks (into hybrid's
    embedding cache, keyed by model and texts)."""
    _import_transformers()
    from hybrid.evaluation import encode_benchmark

    b = _load(benchmark, bench_dir, split, languages)
    q, c = encode_benchmark(model_dir, b, shards=shards, progress=True)
    return {"benchmark": benchmark, "questions": len(q.ids), "candidates": len(c.ids)}


@cached_task(_eval_key, area=_eval_area, done="metrics.json", result=_read_result,
             task_run_name="matrix-{benchmark}")
def evaluation_matrix(model_dir: str, benchmark: str, bench_dir: str, results_dir: str,
                      split: str = "all", languages: list[str] | None = None, *,
                      out: Path) -> None:
    """All settings' metrics and the report into `out`; returns {"benchmark", "out", "summary"}."""
    _import_transformers()
    from hybrid.evaluation import evaluate

    evaluate(model_dir, benchmark, bench_dir, out, split=split, languages=languages)


def _benchmark_key(p: dict) -> dict:
    return {"model": tree_hash(p["model_dir"]), "benchmark": p["benchmark"],
            "data": source_hash(p["source"] or ""),
            "languages": p["languages"], "directions": p["directions"],
            "code": library_hash("evaluation", "encoder.py", "data", "model"),
            "results": results_path(p)}


@cached_task(_benchmark_key, area=_eval_area, done="metrics.json", result=_read_result,
             task_run_name="benchmark-{benchmark}")
def benchmark_task(model_dir: str, benchmark: str, results_dir: str, source: str | None = None,
                   languages: list[str] | None = None, directions: str = "xx-en",
                   shards: int = 1, *, out: Path) -> None:
    """`hybrid evaluate --benchmark NAME` (`run_benchmark`: tatoeba, bitext, miracl, trec)
    into `<results>/eval/<benchmark>/<key>/`; returns {"benchmark", "out", "summary"}."""
    _import_transformers()
    from hybrid.evaluation import run_benchmark

    run_benchmark(benchmark, model_dir, out, source=source, languages=languages,
                  directions=directions, shards=shards)


def _task_file(task: str) -> str | None:
    return task.rsplit(":", 1)[0] if ".py:" in task else None


def _mteb_key(p: dict) -> dict:
    import importlib.metadata

    try:
        version = importlib.metadata.version("mteb")
    except importlib.metadata.PackageNotFoundError:
        version = None
    return {"model": tree_hash(p["model_dir"]), "benchmark": "mteb",
            "tasks": [[t, source_hash(_task_file(t)) if _task_file(t) else None]
                      for t in p["tasks"]],
            "mteb": version, "code": library_hash("evaluation", "encoder.py", "model"),
            "results": results_path(p)}


@cached_task(_mteb_key, area=lambda p: Path(p["results_dir"]) / "eval" / "mteb",
             done="metrics.json", result=_read_result, task_run_name="benchmark-mteb")
def mteb_task(model_dir: str, tasks: list[str], results_dir: str, *, out: Path) -> None:
    """`hybrid mteb` (`run_mteb`; task names or FILE.py:Class) into
    `<results>/eval/mteb/<key>/`; returns {"benchmark": "mteb", "out", "summary"}."""
    _import_transformers()
    from hybrid.evaluation.mteb_adapter import parse_tasks, run_mteb

    run_mteb(model_dir, parse_tasks(",".join(tasks)), out)
