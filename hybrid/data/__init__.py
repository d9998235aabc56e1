"""The data layer: LAReQA benchmarks as tables, the article split, the parallel QA table.

- `read_lareqa(source, benchmark, languages)` -> `Benchmark` (questions / candidates / qrels),
  `write_benchmark`, `load_benchmark`, `Benchmark.subset(articles=, languages=)`.
- `article_split(b_or_articles, heldout_fraction=0.5, seed=0)` -> (train, heldout) article sets.
- `build_pairs(specs, split_seed, heldout_fraction)` -> (DataFrame, meta), `write_pairs`,
  `load_pairs(dir_or_file)`: the parallel QA table (schema in hybrid.data.pairs).
- `read_tatoeba(source, languages, directions)`, `read_aligned(dir, languages)` -> `Bitext`;
  `read_miracl(source, languages)`, `read_trec_dir(dir)` -> `Collection`s (docs/benchmarks.md).
See docs/data.md.
"""

from hybrid.data.bitext import Bitext, read_aligned, read_tatoeba
from hybrid.data.lareqa import (
    BENCHMARKS,
    Benchmark,
    load_benchmark,
    read_lareqa,
    write_benchmark,
)
from hybrid.data.miracl import read_miracl
from hybrid.data.pairs import PAIRS_COLUMNS, load_pairs, validate_pairs, write_pairs
from hybrid.data.sources import build_pairs, parse_source
from hybrid.data.split import article_split
from hybrid.data.trec import Collection, read_trec_dir

__all__ = [
    "BENCHMARKS",
    "PAIRS_COLUMNS",
    "Benchmark",
    "Bitext",
    "Collection",
    "article_split",
    "build_pairs",
    "load_benchmark",
    "load_pairs",
    "parse_source",
    "read_aligned",
    "read_lareqa",
    "read_miracl",
    "read_tatoeba",
    "read_trec_dir",
    "validate_pairs",
    "write_benchmark",
    "write_pairs",
]
