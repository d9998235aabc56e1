"""One entry point for every benchmark `hybrid evaluate --benchmark NAME` runs.

`run_benchmark(name, model, out, ...)` dispatches to the benchmark's evaluation and, with
`trec=True`, also writes the ranking as `run.trec` and its judgements as `qrels.trec`
(`hybrid.evaluation.trec`). A pipeline task calls this one function with a name from
`BENCHMARK_NAMES` and gets the metrics.json dict back. A model spec naming a known
baseline (`hybrid.model.baselines`) is evaluated with that model's pooling and prefixes.

| name | data | evaluation |
| --- | --- | --- |
| xquad-r, mlqa-r | LAReQA files (`hybrid.data.read_lareqa`) | `hybrid.evaluation.evaluate` |
| tatoeba | `tatoeba.{xxx}-eng.*` (`read_tatoeba`) | `evaluate_bitext` |
| bitext | aligned `{lang}.txt` files, e.g. MTOP (`read_aligned`) | `evaluate_bitext` |
| miracl | MIRACL dev topics/qrels/corpus via `datasets` (`read_miracl`) | `evaluate_ir` |
| trec | queries.tsv / corpus.jsonl / qrels.txt (`read_trec_dir`) | `evaluate_ir` |
"""

from __future__ import annotations

from pathlib import Path

from hybrid.errors import HybridError
from hybrid.evaluation.trec import write_trec
from hybrid.io import write_json
from hybrid.model.baselines import with_baseline_settings

LAREQA = ("xquad-r", "mlqa-r")
BENCHMARK_NAMES = (*LAREQA, "tatoeba", "bitext", "miracl", "trec")
#: Each benchmark's headline metric (in its `settings` and `summary` groups); "mteb" is
#: `hybrid mteb` / `run_mteb`.
HEADLINE = {"xquad-r": "map", "mlqa-r": "map", "tatoeba": "accuracy@1", "bitext": "accuracy@1",
            "miracl": "ndcg@10", "trec": "ndcg@10", "mteb": "main_score"}


def run_benchmark(name: str, model, out, *, source=None, languages=None,
                  directions: str = "xx-en", split: str = "all", split_seed: int = 0,
                  heldout_fraction: float = 0.5, index: str = "flat", depth: int = 100,
                  chunk_size: int = 100_000, trec: bool = False, shards: int = 1,
                  bf16: bool = False, batch_size: int = 64, cache=None,
                  progress: bool = True) -> dict:
    """Evaluate `model` on benchmark `name`, writing its outputs into `out` (see the module
    docstring); returns the metrics.json dict."""
    kw = {"shards": shards, "bf16": bf16, "batch_size": batch_size, "cache": cache,
          "progress": progress}
    if name not in BENCHMARK_NAMES:
        raise HybridError(f"--benchmark: unknown benchmark {name!r} (choose {', '.join(BENCHMARK_NAMES)})")
    model = with_baseline_settings(model)  # known HF baselines: their pooling and prefixes
    if name in LAREQA:
        from hybrid.evaluation.evaluate import evaluate, load_eval_benchmark

        m = evaluate(model, name, source, out, split=split, languages=languages,
                     split_seed=split_seed, heldout_fraction=heldout_fraction, index=index, **kw)
        if trec:
            import pandas as pd

            b = load_eval_benchmark(name, source, split=split, languages=languages,
                                    split_seed=split_seed, heldout_fraction=heldout_fraction)
            run = pd.read_parquet(Path(out) / "retrieved.parquet")
            write_trec(out, run, b.qrels.assign(relevance=1), name)
            write_json(Path(out) / "metrics.json", m)  # metrics.json stays the last file
        return m
    if name in ("tatoeba", "bitext"):
        from hybrid.data.bitext import read_aligned, read_tatoeba
        from hybrid.evaluation.bitext import evaluate_bitext

        bitext = (read_tatoeba(source, languages, directions) if name == "tatoeba"
                  else read_aligned(source, languages))
        return evaluate_bitext(model, bitext, out, trec=trec, **kw)
    else:
        from hybrid.evaluation.ir import evaluate_ir

        if name == "miracl":
            from hybrid.data.miracl import read_miracl

            collections = read_miracl(source, languages)
        else:
            from hybrid.data.trec import read_trec_dir

            if source is None:
                raise HybridError("--source: trec needs a directory (queries.tsv, corpus.jsonl, qrels.txt)")
            collections = [read_trec_dir(source)]
        return evaluate_ir(model, collections, out, benchmark=name, index=index, depth=depth,
                           chunk_size=chunk_size, trec=trec, **kw)
