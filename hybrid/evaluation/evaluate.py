"""`evaluate`: a model on a LAReQA benchmark, end to end (load, split, encode, matrix, write).

The steps are separate functions so a pipeline can run them as separate tasks:
`load_eval_benchmark` -> `encode_benchmark` (hybrid.evaluation.encode; cached) ->
`compute_matrix` (hybrid.evaluation.matrix) -> `write_outputs` (hybrid.evaluation.report).
"""

from __future__ import annotations

import time
from pathlib import Path

from hybrid.errors import HybridError
from hybrid.evaluation.encode import encode_benchmark, encoding_backend, model_fingerprint
from hybrid.evaluation.matrix import compute_matrix
from hybrid.evaluation.report import write_outputs
from hybrid.evaluation.search import INDEX_KINDS, DenseIndex, recall_vs_flat
from hybrid.io import write_parquet

SPLITS = ("all", "heldout")
RUN_DEPTH = 10  # rows per question in retrieved.parquet
RECALL_K = 100  # depth at which an approximate index is compared with the exact one


def load_eval_benchmark(benchmark: str, source, *, split: str = "all", languages=None,
                        split_seed: int = 0, heldout_fraction: float = 0.5):
    """The benchmark to evaluate on: read from `source` (a directory of LAReQA `{lang}.json`
    files, a `hybrid data prepare` output directory, or what `read_lareqa` accepts), split by
    article (`heldout`: the held-out side of `article_split(b, heldout_fraction,
    split_seed)`, the same split training uses), then restricted to `languages`.

    The split is taken on the benchmark with all its languages, so it is the same whatever
    `languages` is."""
    from hybrid.data import article_split, load_benchmark, read_lareqa

    if split not in SPLITS:
        raise HybridError(f"--split: must be one of {', '.join(SPLITS)}, not {split!r}")
    if source is not None and (Path(source) / "meta.json").is_file():
        b = load_benchmark(source)
        if b.name != benchmark:
            raise HybridError(f"--source: {source} holds {b.name}, not {benchmark}")
    else:
        b = read_lareqa(source, benchmark)
    if split == "heldout":
        _, heldout = article_split(b, heldout_fraction=heldout_fraction, seed=split_seed)
        b = b.subset(articles=heldout)
    if languages:
        b = b.subset(languages=list(languages))
    return b


def evaluate(model, benchmark: str, source, out, split: str = "all", languages=None, *,
             split_seed: int = 0, heldout_fraction: float = 0.5, shards: int = 1,
             bf16: bool = False, index: str = "flat", batch_size: int = 64, cache=None,
             progress: bool = True, backend: str | None = "auto") -> dict:
    """Evaluate `model` (a model dir, `me5-small` or an HF id) on `benchmark` ("xquad-r" or
    "mlqa-r") read from `source`, and write metrics.json, map_matrix.csv, map_matrix.png,
    report.md and retrieved.parquet (top 10 per question from the pooled candidates, with
    the `index` kind) into `out`. Returns the metrics dict written to metrics.json."""
    from hybrid.model import resolve_model

    t0 = time.perf_counter()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise HybridError(f"--out: {out} exists and is not a directory")
    if index not in INDEX_KINDS:
        raise HybridError(f"--index: must be one of {', '.join(INDEX_KINDS)}, not {index!r}")
    b = load_eval_benchmark(benchmark, source, split=split, languages=languages,
                            split_seed=split_seed, heldout_fraction=heldout_fraction)
    if b.questions.empty or b.candidates.empty:
        raise HybridError(f"{benchmark}: nothing to evaluate (no questions or candidates "
                          f"for split={split}, languages={languages})")
    model_dir = resolve_model(model)

    t = time.perf_counter()
    backend = encoding_backend(backend, bf16)
    q, c = encode_benchmark(model_dir, b, shards=shards, bf16=bf16, batch_size=batch_size,
                            cache=cache, progress=progress, backend=backend)
    t_encode = time.perf_counter() - t

    t = time.perf_counter()
    metrics = compute_matrix(b, q, c, languages=b.languages, progress=progress)
    t_matrix = time.perf_counter() - t

    t = time.perf_counter()
    idx = DenseIndex(index).add(c)
    write_parquet(out / "retrieved.parquet", idx.search(q, k=RUN_DEPTH))
    search = {"index": index, "on_gpu": idx.on_gpu, "run_depth": RUN_DEPTH,
              f"recall@{RECALL_K}_vs_flat": 1.0 if index == "flat"
              else recall_vs_flat(idx, q.vectors, c, k=RECALL_K)}
    search["seconds"] = round(time.perf_counter() - t, 3)

    metrics["search"] = search
    metrics["meta"] = {
        "model": str(model), "model_dir": str(model_dir),
        "model_fingerprint": model_fingerprint(model_dir)[:16],
        "benchmark": benchmark, "source": None if source is None else str(source),
        "split": split, "split_seed": split_seed if split == "heldout" else None,
        "heldout_fraction": heldout_fraction if split == "heldout" else None,
        "questions": len(b.questions), "candidates": len(b.candidates),
        "shards": shards, "bf16": bf16, "batch_size": batch_size, "backend": backend,
        "seconds": {"encode": round(t_encode, 3), "matrix": round(t_matrix, 3),
                    "total": round(time.perf_counter() - t0, 3)},
    }
    write_outputs(metrics, out)
    return metrics
