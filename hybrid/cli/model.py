"""`hybrid model materialize` and `hybrid encode`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from hybrid.cli.options import Backend

model_app = typer.Typer(help="Model files: build the embedded default model.",
                        no_args_is_help=True)


@model_app.command()
def materialize(
    name: Annotated[str, typer.Argument(help="Built-in model to build: me5-small.")],
    out: Annotated[Optional[Path], typer.Option(  # noqa: UP045 (typer needs Optional on 3.10)
        help="Output directory (default: <cache>/models/<name>).")] = None,
    force: Annotated[bool, typer.Option(help="Rebuild even if already materialized.")] = False,
) -> None:
    """Write a built-in model as an HF + sentence-transformers directory; print its path."""
    from hybrid.errors import HybridError
    from hybrid.model.materialize import NAME, materialize_me5_small

    if name != NAME:
        raise HybridError(f"model {name}: unknown built-in model (available: {NAME})")
    typer.echo(str(materialize_me5_small(out, force=force)))


def encode(
    model: Annotated[str, typer.Option(
        help="Model spec: me5-small, a local directory, an HF id org/name, or a registered URI.")],
    input: Annotated[Path, typer.Option(
        help="Texts: .txt (one per line), .jsonl (objects with 'text') or .parquet.")],
    kind: Annotated[str, typer.Option(help="query or passage (selects the prefix).")],
    out: Annotated[Path, typer.Option(help="Embeddings: .npy (float32 [n, d]) or .parquet.")],
    batch_size: Annotated[int, typer.Option(help="Texts per forward pass.")] = 64,
    bf16: Annotated[bool, typer.Option(help="bfloat16 autocast (faster on recent CPUs).")] = False,
    column: Annotated[str, typer.Option(help="Text field of .jsonl/.parquet input.")] = "text",
    backend: Backend = "auto",
) -> None:
    """Embed texts with a bi-encoder (L2-normalised rows in input order). A centered model
    ('hybrid center') subtracts each text's language mean: the 'lang' field of .jsonl/.parquet
    input, else the nearest language mean."""
    from hybrid.encoder import check_kind, read_langs, read_texts, write_embeddings
    from hybrid.errors import HybridError
    from hybrid.io import check_output

    check_kind(kind)
    if out.suffix.lower() not in (".npy", ".parquet"):
        raise HybridError(f"--out {out}: unsupported output type (expected .npy or .parquet)")
    check_output(out, "file", what="--out")
    texts = read_texts(input, column=column)
    from hybrid.centering import Centering
    from hybrid.model import resolve_model

    model_dir = resolve_model(model)
    from hybrid.evaluation.encode import encoding_backend
    from hybrid.onnx_encoder import load_encoder

    encoder = load_encoder(model_dir, encoding_backend(backend, bf16))
    emb = encoder.encode(texts, kind, batch_size=batch_size, bf16=bf16)
    centering = Centering.load(model_dir)
    if centering is not None:
        emb = centering.apply(emb, kind, read_langs(input, len(texts)))
    write_embeddings(out, emb)
    typer.echo(f"{len(texts)} {kind} embeddings ({emb.shape[1]}-d) -> {out}")


def center(
    model: Annotated[str, typer.Option(
        help="Model spec: me5-small, a local directory, an HF id org/name, or a registered URI.")],
    data: Annotated[Path, typer.Option(
        help="Texts to estimate the means on, disjoint from your test data: a pairs directory "
             "('hybrid data pairs') or a .parquet/.jsonl corpus with 'text' and 'lang'.")],
    out: Annotated[Path, typer.Option(help="Directory of the centered model (a new one).")],
    per_language: Annotated[int, typer.Option(help="Texts per language and kind (a seeded sample).")] = 512,
    seed: Annotated[int, typer.Option(help="Seed of the sample.")] = 0,
    shards: Annotated[int, typer.Option(help="Ray encoding tasks.")] = 1,
) -> None:
    """Per-language centering: write MODEL with language means estimated on DATA; every
    encode path (evaluate, index, search, serve, encode) then subtracts them."""
    from hybrid.centering import Centering, center_model
    from hybrid.errors import HybridError

    if per_language < 1:
        raise HybridError(f"--per-language: must be at least 1, not {per_language}")
    path = center_model(model, data, out, per_language=per_language, seed=seed, shards=shards)
    c = Centering.load(path)
    langs = c.languages("passage")
    typer.echo(f"centered {model} on {len(langs)} languages ({', '.join(langs)}) -> {path}")


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.add_typer(model_app, name="model")
    app.command("encode")(encode)
    app.command("center")(center)
