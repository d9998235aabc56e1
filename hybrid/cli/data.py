"""`hybrid data ...`: prepare LAReQA benchmarks and build the parallel QA table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

data_app = typer.Typer(help="Prepare benchmarks and the parallel QA table.", no_args_is_help=True)


def _warn(messages) -> None:
    for msg in messages:
        typer.echo(f"warning: {msg}", err=True)


@data_app.command()
def prepare(
    benchmark: Annotated[str, typer.Option(help="xquad-r or mlqa-r.")],
    out: Annotated[Path, typer.Option(help="Output directory (questions/candidates/qrels .parquet, meta.json).")],
    source: Annotated[Optional[str], typer.Option(  # noqa: UP045 (typer needs Optional on 3.10)
        help="Directory with {lang}.json, an http(s) base URL, or 'upstream' (pinned GitHub "
        "files, downloaded once into the cache). Default: the offline copy if any, else upstream.")] = None,
    languages: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="Comma-separated subset, e.g. 'en,de' (default: all).")] = None,
) -> None:
    """Write a LAReQA benchmark as questions/candidates/qrels Parquet tables."""
    from hybrid.data.lareqa import BENCHMARK_FILES, read_lareqa, write_benchmark
    from hybrid.io import check_output
    from hybrid.langs import parse_langs

    check_output(out, "dir", what="--out", names=BENCHMARK_FILES)
    b = read_lareqa(source, benchmark, parse_langs(languages))
    write_benchmark(b, out)
    _warn(b.meta.get("warnings", []))
    counts = b.counts()
    typer.echo(f"{b.name} -> {out}")
    typer.echo(f"{'lang':<6}{'questions':>10}{'candidates':>12}")
    for lang in b.languages:
        typer.echo(f"{lang:<6}{counts['questions'][lang]:>10}{counts['candidates'][lang]:>12}")
    typer.echo(f"{'total':<6}{counts['total_questions']:>10}{counts['total_candidates']:>12}")
    typer.echo(f"xling_ids {counts['xling_ids']}, articles {counts['articles']}, qrels {counts['qrels']}")


@data_app.command()
def pairs(
    source: Annotated[list[str], typer.Option(
        help="Repeatable. KIND:LOCATION[?key=value&...]: xquad-r:[DIR|URL|upstream], "
        "table:FILE, squad:NAME=DIR, mmarco:DIR_OR_HUB_ID (options in docs/data.md).")],
    out: Annotated[Path, typer.Option(help="Output directory (pairs.parquet, pairs_meta.json).")],
    split_seed: Annotated[int, typer.Option(help="Seed of the XQuAD-R article split.")] = 0,
    heldout_fraction: Annotated[float, typer.Option(
        help="Share of XQuAD-R articles held out (not used for pairs).")] = 0.5,
) -> None:
    """Build the parallel QA table (one row per dataset, xling_id, lang)."""
    from hybrid.data.pairs import PAIRS_FILES, counts, write_pairs
    from hybrid.data.sources import build_pairs
    from hybrid.io import check_output

    check_output(out, "dir", what="--out", names=PAIRS_FILES)
    df, meta = build_pairs(source, split_seed=split_seed, heldout_fraction=heldout_fraction)
    write_pairs(df, out, meta)
    _warn(meta["warnings"])
    typer.echo(f"pairs -> {out / 'pairs.parquet'}")
    for dataset, per_lang in counts(df).items():
        langs = " ".join(f"{lang}={n}" for lang, n in sorted(per_lang.items()))
        typer.echo(f"{dataset}: {sum(per_lang.values())} rows ({langs})")
    typer.echo(f"total: {len(df)} rows")


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.add_typer(data_app, name="data")
