"""Data tasks: download and prepare LAReQA benchmarks, build the parallel QA table.

Both are cached on their inputs' content (the source files' hashes), so a re-run with the
same data is a cache hit; outputs go under `<results>/data/...`, named by that hash.
Downloads (http(s) or `upstream` sources) retry with exponential backoff.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.tasks import exponential_backoff

from tasks.caching import cached_task, results_path
from tasks.hashing import library_hash, source_hash


def is_remote(source: str | None) -> bool:
    return source is not None and (source == "upstream" or "://" in source)


def _prepare_key(p: dict) -> dict:
    return {"benchmark": p["benchmark"], "source": source_hash(p["source"] or ""),
            "code": library_hash("data"), "results": results_path(p)}


@task(retries=4, retry_delay_seconds=exponential_backoff(backoff_factor=5), retry_jitter_factor=0.5,
      task_run_name="download-{benchmark}")
def download_benchmark(benchmark: str, source: str) -> str:
    """Fetch a benchmark's files (sha256-checked, cached in the user cache); retried."""
    from hybrid.data.lareqa import download_benchmark_files

    download_benchmark_files(benchmark, source)
    return source


def _data_area(p: dict) -> Path:
    from hybrid.paths import validate_name

    # checked before it becomes a path component
    return Path(p["results_dir"]) / "data" / validate_name(p["benchmark"], where="benchmarks")


@cached_task(_prepare_key, area=_data_area, done="meta.json", task_run_name="prepare-{benchmark}")
def prepare_benchmark(benchmark: str, source: str | None, results_dir: str, *, out: Path) -> None:
    """`hybrid data prepare` into `out`: questions/candidates/qrels Parquet + meta.json; the
    task returns the dir."""
    from hybrid.data.lareqa import read_lareqa, write_benchmark

    write_benchmark(read_lareqa(source, benchmark), out)


def _pairs_key(p: dict) -> dict:
    from hybrid.data.sources import parse_source

    return {"sources": [[s, source_hash(parse_source(s).location)] for s in p["sources"]],
            "split_seed": p["split_seed"], "heldout_fraction": p["heldout_fraction"],
            "code": library_hash("data"), "results": results_path(p)}


@cached_task(_pairs_key, area=lambda p: Path(p["results_dir"]) / "data" / "pairs",
             done="pairs_meta.json")
def build_pairs_table(sources: list[str], results_dir: str, split_seed: int = 0,
                      heldout_fraction: float = 0.5, *, out: Path) -> None:
    """`hybrid data pairs` into `out`: the parallel QA table; the task returns the dir
    holding pairs.parquet."""
    from hybrid.data.pairs import write_pairs
    from hybrid.data.sources import build_pairs

    df, meta = build_pairs(sources, split_seed=split_seed, heldout_fraction=heldout_fraction)
    write_pairs(df, out, meta)


__all__ = ["download_benchmark", "prepare_benchmark", "build_pairs_table", "is_remote"]
