"""Data tasks: download and prepare LAReQA benchmarks, build the parallel QA table.

Both are cached on their inputs' content (the source files' hashes), so a re-run with the
same data is a cache hit; outputs go under `<results>/data/...`, named by that hash.
Downloads (http(s) or `upstream` sources) retry with exponential backoff.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import TASK_SOURCE, CacheKeyFnPolicy
from prefect.tasks import exponential_backoff

from tasks.hashing import dict_hash, library_hash, source_hash


def is_remote(source: str | None) -> bool:
    return source is not None and (source == "upstream" or "://" in source)


def _prepare_key(ctx, p) -> str:
    return dict_hash({"benchmark": p["benchmark"], "source": source_hash(p["source"] or ""),
                      "code": library_hash("data"),
                      "results": str(Path(p["results_dir"]).resolve())})


@task(retries=4, retry_delay_seconds=exponential_backoff(backoff_factor=5), retry_jitter_factor=0.5,
      task_run_name="download-{benchmark}")
def download_benchmark(benchmark: str, source: str) -> str:
    """Fetch a benchmark's files (sha256-checked, cached in the user cache); retried."""
    from hybrid.data.lareqa import _languages, benchmark_spec, resolve_files

    spec = benchmark_spec(benchmark)
    resolve_files(spec, source, _languages(spec, None))
    return source


@task(cache_policy=TASK_SOURCE + CacheKeyFnPolicy(cache_key_fn=_prepare_key),
      persist_result=True, task_run_name="prepare-{benchmark}")
def prepare_benchmark(benchmark: str, source: str | None, results_dir: str) -> str:
    """`hybrid data prepare`: questions/candidates/qrels Parquet + meta.json; returns the dir."""
    from hybrid.data.lareqa import read_lareqa, write_benchmark
    from hybrid.paths import validate_name

    validate_name(benchmark, where="benchmarks")  # before it becomes a path component
    out = Path(results_dir) / "data" / benchmark / _prepare_key(None, {
        "benchmark": benchmark, "source": source, "results_dir": results_dir})[:16]
    if not (out / "meta.json").is_file():
        write_benchmark(read_lareqa(source, benchmark), out)
    return str(out)


def _spec_location(spec: str) -> str:
    from hybrid.data.sources import parse_source

    return parse_source(spec).location


def _pairs_key(ctx, p) -> str:
    return dict_hash({"sources": [[s, source_hash(_spec_location(s))] for s in p["sources"]],
                      "split_seed": p["split_seed"], "heldout_fraction": p["heldout_fraction"],
                      "code": library_hash("data"),
                      "results": str(Path(p["results_dir"]).resolve())})


@task(cache_policy=TASK_SOURCE + CacheKeyFnPolicy(cache_key_fn=_pairs_key), persist_result=True)
def build_pairs_table(sources: list[str], results_dir: str, split_seed: int = 0,
                      heldout_fraction: float = 0.5) -> str:
    """`hybrid data pairs`: the parallel QA table; returns the dir holding pairs.parquet."""
    from hybrid.data.pairs import write_pairs
    from hybrid.data.sources import build_pairs

    key = _pairs_key(None, {"sources": sources, "split_seed": split_seed,
                            "heldout_fraction": heldout_fraction, "results_dir": results_dir})
    out = Path(results_dir) / "data" / "pairs" / key[:16]
    if not (out / "pairs_meta.json").is_file():
        df, meta = build_pairs(sources, split_seed=split_seed, heldout_fraction=heldout_fraction)
        write_pairs(df, out, meta)
    return str(out)


__all__ = ["download_benchmark", "prepare_benchmark", "build_pairs_table", "is_remote"]
