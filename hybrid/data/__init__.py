"""The data layer: LAReQA benchmarks as tables, the article split, the parallel QA table.

- `read_lareqa(source, benchmark, languages)` -> `Benchmark` (questions / candidates / qrels),
  `write_benchmark`, `load_benchmark`, `Benchmark.subset(articles=, languages=)`.
- `article_split(b_or_articles, heldout_fraction=0.5, seed=0)` -> (train, heldout) article sets.
- `build_pairs(specs, split_seed, heldout_fraction)` -> (DataFrame, meta), `write_pairs`,
  `load_pairs(dir_or_file)`: the parallel QA table (schema in hybrid.data.pairs).
See docs/data.md.
"""

from hybrid.data.lareqa import (
    BENCHMARKS,
    Benchmark,
    load_benchmark,
    read_lareqa,
    write_benchmark,
)
from hybrid.data.pairs import PAIRS_COLUMNS, load_pairs, validate_pairs, write_pairs
from hybrid.data.sources import build_pairs, parse_source
from hybrid.data.split import article_split

__all__ = [
    "BENCHMARKS",
    "PAIRS_COLUMNS",
    "Benchmark",
    "article_split",
    "build_pairs",
    "load_benchmark",
    "load_pairs",
    "parse_source",
    "read_lareqa",
    "validate_pairs",
    "write_benchmark",
    "write_pairs",
]
