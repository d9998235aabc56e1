"""`hybrid evaluate`: a model on a benchmark (LAReQA, Tatoeba / bitext, MIRACL, TREC)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from hybrid.cli.options import Backend
from hybrid.errors import HybridError


def evaluate_command(
    model: Annotated[str, typer.Option(help="Model dir, 'me5-small', or an HF id.")],
    benchmark: Annotated[str, typer.Option(
        help="xquad-r, mlqa-r, tatoeba, bitext, miracl or trec (docs/benchmarks.md).")],
    out: Annotated[Path, typer.Option(
        help="Output directory (metrics.json, report.md, and the benchmark's own files).")],
    source: Annotated[Optional[str], typer.Option(  # noqa: UP045 (typer needs Optional on 3.10)
        help="Data: LAReQA {lang}.json dir or prepared dir; Tatoeba dir; bitext {lang}.txt dir; "
        "MIRACL dir or 'hub'; TREC dir. Default: the offline copy / upstream.")] = None,
    split: Annotated[str, typer.Option(
        help="LAReQA: all, or heldout (the held-out articles of the training split).")] = "all",
    split_seed: Annotated[int, typer.Option(help="Seed of the article split.")] = 0,
    heldout_fraction: Annotated[float, typer.Option(help="Share of articles held out.")] = 0.5,
    languages: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="Comma-separated subset, e.g. 'en,de' (default: the benchmark's).")] = None,
    directions: Annotated[str, typer.Option(
        help="Tatoeba: xx-en (X retrieves English), en-xx or both.")] = "xx-en",
    trec: Annotated[bool, typer.Option(
        help="Also write the ranking as run.trec and its judgements as qrels.trec.")] = False,
    shards: Annotated[int, typer.Option(
        help="Ray encoding tasks (the embeddings do not depend on it).")] = 1,
    bf16: Annotated[bool, typer.Option(help="Encode under bfloat16 autocast.")] = False,
    index: Annotated[str, typer.Option(
        help="FAISS index: flat (exact), ivf or hnsw.")] = "flat",
    depth: Annotated[int, typer.Option(help="MIRACL/TREC: documents retrieved per query.")] = 100,
    chunk_size: Annotated[int, typer.Option(
        help="MIRACL/TREC: corpus passages encoded and searched per chunk.")] = 100_000,
    batch_size: Annotated[int, typer.Option(help="Encoding batch size.")] = 64,
    backend: Backend = "auto",
) -> None:
    """Evaluate a model on a benchmark; writes metrics.json, report.md and more into --out."""
    from hybrid.evaluation.benchmarks import LAREQA, run_benchmark
    from hybrid.langs import parse_langs

    allowed = None
    if benchmark in LAREQA:
        from hybrid.data.lareqa import benchmark_spec

        allowed = benchmark_spec(benchmark).languages
    langs = parse_langs(languages, allowed=allowed)
    if split not in ("all", "heldout"):
        raise HybridError(f"--split: must be all or heldout, not {split!r}")
    m = run_benchmark(benchmark, model, out, source=source, languages=langs,
                      directions=directions, split=split, split_seed=split_seed,
                      heldout_fraction=heldout_fraction, index=index, depth=depth,
                      chunk_size=chunk_size, trec=trec, shards=shards, bf16=bf16,
                      batch_size=batch_size, backend=backend)
    s = m["summary"]
    if benchmark in LAREQA:
        bias = s["language_bias"]
        typer.echo(f"mAP mono {_fmt(s['mono']['map'])}  cross {_fmt(s['cross']['map'])}  "
                   f"multi {_fmt(s['multi']['map'])}  language bias "
                   f"{'-' if bias is None else f'{bias:.1f}'}  "
                   f"({len(m['settings'])} settings, {m['meta']['seconds']['total']:.0f} s)")
    else:
        for key, values in m["settings"].items():
            typer.echo(f"{key:>12}  " + "  ".join(f"{k} {_fmt(v)}" for k, v in values.items()))
        for group, values in s.items():
            typer.echo(f"{'mean ' + group:>12}  " + "  ".join(f"{k} {_fmt(v)}" for k, v in values.items()))
        typer.echo(f"({m['meta']['seconds']['total']:.0f} s)")
    typer.echo(f"wrote {out}/metrics.json, report.md" + (", run.trec, qrels.trec" if trec else ""))


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.command("evaluate")(evaluate_command)
