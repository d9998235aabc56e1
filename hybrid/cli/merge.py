"""`hybrid merge`: weight interpolation of two models (WiSE-FT, model soups)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from hybrid.errors import HybridError


def merge(
    a: Annotated[str, typer.Argument(
        metavar="A", help="Model A (weight 0): a model spec or directory; the output has its tokenizer, "
             "config and encoder settings.")],
    b: Annotated[str, typer.Argument(
        metavar="B", help="Model B (weight 1), same architecture: e.g. another training of the same start, "
             "or A's starting model (me5-small).")],
    out: Annotated[Path, typer.Option(
        help="Directory of the merged model (new, empty, or a previous merge output).")],
    weight: Annotated[Optional[float], typer.Option(  # noqa: UP045 (typer needs Optional on 3.10)
        help="theta = (1 - weight) * A + weight * B, in [0, 1] (with --base: A + weight * (B - BASE)).")] = None,
    base: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="Task arithmetic: add weight times B's change from BASE (the model A and B were "
             "trained from) to A, instead of interpolating.")] = None,
    select_on: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        help="Choose the weight on the validation ids of this pairs table ('hybrid data "
             "pairs'; the ids training held out, never a benchmark's test split).")] = None,
    weights: Annotated[str, typer.Option(
        help="Weights tried with --select-on, comma-separated.")] =
        "0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1",
    val_ids: Annotated[Optional[int], typer.Option(  # noqa: UP045
        help="Held-out ids per dataset (default: the smaller data.val_ids of A's and B's "
             "trainings, from their train_summary.json, else 160).")] = None,
    select: Annotated[str, typer.Option(
        help="Score to maximise: mean (of mono and pooled mAP), mono or pooled.")] = "mean",
    batch_size: Annotated[int, typer.Option(help="Texts per forward pass.")] = 64,
) -> None:
    """Merge two models' weights: theta = (1 - weight) * A + weight * B (with --base: A +
    weight * (B - BASE)), with --weight, or the weight that scores best on held-out training
    ids (--select-on). A's centering means are not carried over (run 'hybrid center' on the output)."""
    from hybrid.model.merge import ModelPair, check_merge_out, check_weight, merge_models
    from hybrid.model.merge_select import SELECT, parse_weights, select_weight

    if (weight is None) == (select_on is None):
        raise HybridError("--weight / --select-on: give exactly one (a fixed weight, or a "
                          "pairs table to choose it on)")
    if weight is not None:
        weight = check_weight(weight)
    else:
        parse_weights(weights)
        if select not in SELECT:
            raise HybridError(f"--select: must be one of {', '.join(SELECT)}, not {select!r}")
    check_merge_out(out)
    pair = ModelPair.open(a, b, base)
    check_merge_out(out, pair.inputs)
    selection = None
    if select_on is not None:
        def line(row: dict) -> None:
            typer.echo(f"[merge] weight {row['weight']:.3g}: mono mAP {row['mono']:.4f}, "
                       f"pooled mAP {row['pooled']:.4f}, score {row['score']:.4f}", err=True)

        sel = select_weight(a, b, select_on, weights, val_ids, select=select,
                            batch_size=batch_size, on_weight=line, pair=pair)
        typer.echo(f"validation: {sel.queries} queries, {sel.candidates} candidates, "
                   f"{len(sel.languages)} languages, {sel.val_ids} held-out ids per dataset "
                   f"of {select_on}; score = {sel.to_json()['score']}")
        typer.echo(sel.table())
        weight = sel.weight
        selection = sel.to_json()
        warnings = sel.warnings
    else:
        warnings = pair.warnings
    for msg in warnings:
        typer.echo(f"warning: {msg}", err=True)
    path = merge_models(a, b, weight, out, selection=selection, pair=pair)
    from hybrid.centering import FILE

    if (pair.dirs[0] / FILE).is_file():
        typer.echo(f"note: {a}'s centering means are not carried over (estimated for A's "
                   "embeddings); run 'hybrid center' on the merged model", err=True)
    how = f"{a} + {weight:g} x ({b} - {base})" if base else f"{a} + {b} at weight {weight:g}"
    typer.echo(f"merged {how} -> {path}")


def register(app: typer.Typer) -> None:
    """Add `hybrid merge` to the root app."""
    app.command("merge")(merge)
