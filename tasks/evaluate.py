"""Evaluation tasks: sharded encoding (Ray tasks; cached by hybrid on model + table content)
and the LAReQA settings matrix with its report, under `<results>/eval/<benchmark>/<key>/`.

`encode_benchmark_task` fills hybrid's embedding cache; `evaluation_matrix` then reads the
embeddings from that cache, computes every setting and writes metrics.json, map_matrix.csv,
map_matrix.png and report.md. Both are cached on the model's and the benchmark's content.
"""

from __future__ import annotations

import threading
from pathlib import Path

from prefect import task
from prefect.cache_policies import TASK_SOURCE, CacheKeyFnPolicy

from tasks.hashing import dict_hash, library_hash, tree_hash


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
    import json

    _import_transformers()
    from hybrid.evaluation import evaluate

    key = _eval_key(None, {"model_dir": model_dir, "bench_dir": bench_dir,
                           "benchmark": benchmark, "split": split, "languages": languages,
                           "results_dir": results_dir})
    out = Path(results_dir) / "eval" / benchmark / key[:16]
    if not (out / "metrics.json").is_file():
        evaluate(model_dir, benchmark, bench_dir, out, split=split, languages=languages)
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    return {"benchmark": benchmark, "out": str(out), "summary": metrics["summary"]}
