"""`hybrid evaluate`: a model on XQuAD-R / MLQA-R with the LAReQA protocol."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from hybrid.errors import HybridError


def evaluate_command(
    model: Annotated[str, typer.Option(help="Model dir, 'me5-small', or an HF id.")],
    benchmark: Annotated[str, typer.Option(help="xquad-r or mlqa-r.")],
    out: Annotated[Path, typer.Option(
        help="Output directory (metrics.json, map_matrix.csv/.png, report.md, retrieved.parquet).")],
    source: Annotated[Optional[str], typer.Option(  # noqa: UP045 (typer needs Optional on 3.10)
        help="Directory of {lang}.json files, or a 'hybrid data prepare' output. "
        "Default: the offline copy if any, else upstream.")] = None,
    split: Annotated[str, typer.Option(
        help="all, or heldout (the held-out articles of the training split).")] = "all",
    split_seed: Annotated[int, typer.Option(help="Seed of the article split.")] = 0,
    heldout_fraction: Annotated[float, typer.Option(help="Share of articles held out.")] = 0.5,
    languages: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="Comma-separated subset, e.g. 'en,de' (default: all).")] = None,
    shards: Annotated[int, typer.Option(
        help="Ray encoding tasks (the embeddings do not depend on it).")] = 1,
    bf16: Annotated[bool, typer.Option(help="Encode under bfloat16 autocast.")] = False,
    index: Annotated[str, typer.Option(
        help="FAISS index for retrieved.parquet: flat (exact), ivf or hnsw.")] = "flat",
    batch_size: Annotated[int, typer.Option(help="Encoding batch size.")] = 64,
) -> None:
    """Evaluate a model: metrics.json, map_matrix.csv/.png, report.md, retrieved.parquet."""
    from hybrid.data.lareqa import benchmark_spec
    from hybrid.evaluation import evaluate
    from hybrid.langs import parse_langs

    spec = benchmark_spec(benchmark)
    langs = parse_langs(languages, allowed=spec.languages)
    if split not in ("all", "heldout"):
        raise HybridError(f"--split: must be all or heldout, not {split!r}")
    m = evaluate(model, benchmark, source, out, split=split, languages=langs,
                 split_seed=split_seed, heldout_fraction=heldout_fraction, shards=shards,
                 bf16=bf16, index=index, batch_size=batch_size)
    s = m["summary"]
    bias = s["language_bias"]
    typer.echo(f"mAP mono {_fmt(s['mono']['map'])}  cross {_fmt(s['cross']['map'])}  "
               f"multi {_fmt(s['multi']['map'])}  language bias "
               f"{'-' if bias is None else f'{bias:.1f}'}  "
               f"({len(m['settings'])} settings, {m['meta']['seconds']['total']:.0f} s)")
    typer.echo(f"wrote {out}/metrics.json, map_matrix.csv, map_matrix.png, report.md, retrieved.parquet")


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.command("evaluate")(evaluate_command)
