"""The data layer: LAReQA benchmarks as tables, the article split, the parallel QA table."""

from hybrid.data.lareqa import (
    BENCHMARKS,
    Benchmark,
    load_benchmark,
    read_lareqa,
    write_benchmark,
)
from hybrid.data.split import article_split

__all__ = [
    "BENCHMARKS",
    "Benchmark",
    "article_split",
    "load_benchmark",
    "read_lareqa",
    "write_benchmark",
]
