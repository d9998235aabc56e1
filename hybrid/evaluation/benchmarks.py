"""One entry point for every benchmark `hybrid evaluate --benchmark NAME` runs.

`run_benchmark(name, model, out, ...)` dispatches to the benchmark's evaluation and, with
`trec=True`, also writes the ranking as `run.trec` and its judgements as `qrels.trec`
(`hybrid.evaluation.trec`). The files are written into a temporary directory that replaces
`out` as a whole at the end (`hybrid.io.output_dir`): an interrupted or failed evaluation
leaves the earlier output complete, never a mix of two runs. A pipeline task calls this one function with a name from
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

from hybrid.errors import HybridError
from hybrid.evaluation.trec import write_trec
from hybrid.io import check_output, output_dir, write_json
from hybrid.model.baselines import with_baseline_settings

LAREQA = ("xquad-r", "mlqa-r")
BENCHMARK_NAMES = (*LAREQA, "tatoeba", "bitext", "miracl", "trec")
#: Each benchmark's headline metric (in its `settings` and `summary` groups); "mteb" is
#: `hybrid mteb` / `run_mteb`.
#: Every entry `run_benchmark` may write into `out` (an existing `out` holding anything else
#: is refused, not replaced).
EVAL_FILES = ("metrics.json", "report.md", "retrieved.parquet", "map_matrix.csv",
              "map_matrix.png", "run.trec", "qrels.trec")
HEADLINE = {"xquad-r": "map", "mlqa-r": "map", "tatoeba": "accuracy@1", "bitext": "accuracy@1",
            "miracl": "ndcg@10", "trec": "ndcg@10", "mteb": "main_score"}


def run_benchmark(name: str, model, out, *, source=None, languages=None,
                  directions: str = "xx-en", split: str = "all", split_seed: int = 0,
                  heldout_fraction: float = 0.5, index: str = "flat", depth: int = 100,
                  chunk_size: int = 100_000, trec: bool = False, shards: int = 1,
                  bf16: bool = False, batch_size: int = 64, cache=None,
                  progress: bool = True, backend: str | None = "auto") -> dict:
    """Evaluate `model` on benchmark `name`, writing its outputs into `out` (see the module
    docstring); returns the metrics.json dict."""
    kw = {"shards": shards, "bf16": bf16, "batch_size": batch_size, "cache": cache,
          "progress": progress, "backend": backend}
    if name not in BENCHMARK_NAMES:
        raise HybridError(f"--benchmark: unknown benchmark {name!r} (choose {', '.join(BENCHMARK_NAMES)})")
    check_output(out, "dir", what="--out", names=EVAL_FILES)
    model = with_baseline_settings(model)  # known HF baselines: their pooling and prefixes
    if name in LAREQA:
        from hybrid.evaluation.evaluate import evaluate, load_eval_benchmark

        split_kw = {"split": split, "languages": languages, "split_seed": split_seed,
                    "heldout_fraction": heldout_fraction}
        with output_dir(out, EVAL_FILES) as tmp:
            m = evaluate(model, name, source, tmp, index=index, **split_kw, **kw)
            if trec:
                import pandas as pd

                b = load_eval_benchmark(name, source, **split_kw)
                run = pd.read_parquet(tmp / "retrieved.parquet")
                write_trec(tmp, run, b.qrels.assign(relevance=1), name)
                write_json(tmp / "metrics.json", m)  # metrics.json stays the last file
        return m
    if name in ("tatoeba", "bitext"):
        from hybrid.data.bitext import read_aligned, read_tatoeba
        from hybrid.evaluation.bitext import evaluate_bitext

        bitext = (read_tatoeba(source, languages, directions) if name == "tatoeba"
                  else read_aligned(source, languages))
        with output_dir(out, EVAL_FILES) as tmp:
            return evaluate_bitext(model, bitext, tmp, trec=trec, **kw)
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
        with output_dir(out, EVAL_FILES) as tmp:
            return evaluate_ir(model, collections, tmp, benchmark=name, index=index, depth=depth,
                               chunk_size=chunk_size, trec=trec, **kw)
