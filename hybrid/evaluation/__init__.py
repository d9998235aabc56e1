"""Evaluation on the LAReQA protocol: sharded encoding, FAISS search, the settings matrix.

- `evaluate(model, benchmark, source, out, split="all", languages=None, ...) -> dict`
  (hybrid.evaluation.evaluate): everything, writing metrics.json, map_matrix.csv/.png,
  report.md and retrieved.parquet;
- `encode_benchmark(model, benchmark, shards=1, bf16=False, ...) -> (queries, candidates)`
  and `encode_texts(...)` (hybrid.evaluation.encode): cached, Ray-sharded embeddings;
- `compute_matrix(benchmark, queries, candidates, languages=None) -> dict`
  (hybrid.evaluation.matrix): every setting's metrics from embeddings;
- `DenseIndex`, `recall_vs_flat` (hybrid.evaluation.search): FAISS top-k search;
- `settings_for`, `setting_counts` (hybrid.evaluation.settings); `METRICS`, `per_query`,
  `mean_metrics`, `language_bias` (hybrid.evaluation.metrics); `Embeddings`.
- beyond LAReQA (docs/benchmarks.md): `run_benchmark(name, model, out, ...)` (every
  `hybrid evaluate --benchmark NAME`), `evaluate_bitext` (Tatoeba, aligned files),
  `evaluate_ir` / `retrieve` / `run_metrics` (MIRACL, TREC-style collections),
  `write_run` / `write_qrels` / `read_run` / `read_qrels` (TREC files), `MtebEncoder` and
  `run_mteb` (MTEB; needs the `mteb` extra).
See docs/evaluation.md for the protocol and the metric definitions.
"""

from hybrid.evaluation.benchmarks import BENCHMARK_NAMES, run_benchmark
from hybrid.evaluation.bitext import evaluate_bitext
from hybrid.evaluation.embeddings import Embeddings
from hybrid.evaluation.encode import encode_benchmark, encode_texts
from hybrid.evaluation.evaluate import evaluate, load_eval_benchmark
from hybrid.evaluation.ir import evaluate_ir, retrieve, run_metrics
from hybrid.evaluation.matrix import compute_matrix
from hybrid.evaluation.metrics import METRICS, language_bias, mean_metrics, per_query
from hybrid.evaluation.mteb_adapter import MtebEncoder, run_mteb
from hybrid.evaluation.search import DenseIndex, recall_vs_flat
from hybrid.evaluation.settings import Setting, setting_counts, settings_for
from hybrid.evaluation.trec import read_qrels, read_run, write_qrels, write_run

__all__ = [
    "BENCHMARK_NAMES", "METRICS", "DenseIndex", "Embeddings", "MtebEncoder", "Setting",
    "compute_matrix", "encode_benchmark", "encode_texts", "evaluate", "evaluate_bitext",
    "evaluate_ir", "language_bias", "load_eval_benchmark", "mean_metrics", "per_query",
    "read_qrels", "read_run", "recall_vs_flat", "retrieve", "run_benchmark", "run_metrics",
    "run_mteb", "setting_counts", "settings_for", "write_qrels", "write_run",
]
