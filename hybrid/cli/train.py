"""`hybrid train` (Ray Train) and `hybrid batches` (inspect a sampling mixture, no training)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from hybrid.errors import HybridError


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.command("train")(train_cmd)
    app.command("batches")(batches_cmd)


def train_cmd(
    pairs: Annotated[Path, typer.Option("--pairs", help="Directory with pairs.parquet (`hybrid data pairs`).")],
    out: Annotated[Path, typer.Option("--out", help="Output directory: model/, train_summary.json, train_log.jsonl, ray/.")],
    profile: Annotated[str, typer.Option("--profile", help="tiny, quick, paper, or a .yaml file.")] = "quick",
    strategy: Annotated[str | None, typer.Option("--strategy", help="hybrid, x-x-mono, x-y, x-x, en-en or multitask.")] = None,
    alpha: Annotated[float | None, typer.Option("--alpha", help="Share of mono batches for hybrid, in [0, 1].")] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Ray Train workers.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="me5-small, a model directory or an HF id.")] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="Maximum training steps.")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Global batch size (pairs per step).")] = None,
    seed: Annotated[int | None, typer.Option("--seed")] = None,
    bf16: Annotated[bool | None, typer.Option("--bf16/--no-bf16", help="bf16 autocast (default: where supported).")] = None,
    freeze_embeddings: Annotated[bool | None, typer.Option("--freeze-embeddings/--no-freeze-embeddings", help="Freeze word embeddings (default: on CPU).")] = None,
    hard_negatives: Annotated[int | None, typer.Option("--hard-negatives", help="Hard negatives per pair.")] = None,
    grad_cache_chunk: Annotated[int | None, typer.Option("--grad-cache-chunk", help="Gradient caching: embed this many texts at a time (memory independent of --batch-size; about one more forward pass).")] = None,
    val_every: Annotated[int | None, typer.Option("--val-every", help="Validate every k steps.")] = None,
    patience: Annotated[int | None, typer.Option("--patience", help="Evaluations without improvement before stopping.")] = None,
    max_failures: Annotated[int | None, typer.Option("--max-failures", help="Worker failures to recover from.")] = None,
    storage_path: Annotated[Path | None, typer.Option("--storage-path", help="Ray Train storage (default OUT/ray); a rerun with the same one resumes.")] = None,
) -> None:
    """Train a bi-encoder with hybrid batches on Ray Train; resumes from its storage path."""
    from hybrid.io import check_output, output_lock
    from hybrid.train import load_profile, train

    check_output(out, "dir", what="--out")
    cfg = load_profile(profile).override(**{
        "data.pairs": str(pairs), "out": str(out), "data.strategy": strategy, "data.alpha": alpha,
        "run.workers": workers, "model.model": model, "run.steps": steps,
        "data.batch_size": batch_size, "run.seed": seed, "run.bf16": bf16,
        "model.freeze_embeddings": freeze_embeddings, "data.hard_negatives": hard_negatives,
        "data.grad_cache_chunk": grad_cache_chunk,
        "run.val_every": val_every, "run.patience": patience, "run.max_failures": max_failures,
        "run.storage_path": None if storage_path is None else str(storage_path),
    })
    with output_lock(out):
        result = train(cfg)
    s = json.loads((result / "train_summary.json").read_text(encoding="utf-8"))
    best = s["best_val_loss"]
    typer.echo(f"trained {s['steps']} steps ({s['pairs_seen']} pairs, {s['pairs_per_s']} pairs/s); "
               f"best validation loss {best if best is not None else 'n/a'}; model in {result / 'model'}")


def batches_cmd(
    pairs: Annotated[Path, typer.Option("--pairs", help="Directory with pairs.parquet (`hybrid data pairs`).")],
    out: Annotated[Path, typer.Option("--out", help="JSON-lines file, one batch per line.")],
    strategy: Annotated[str, typer.Option("--strategy", help="hybrid, x-x-mono, x-y, x-x, en-en or multitask.")] = "hybrid",
    alpha: Annotated[float, typer.Option("--alpha", help="Share of mono batches for hybrid, in [0, 1].")] = 0.5,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Global batch size.")] = 32,
    steps: Annotated[int | None, typer.Option("--steps", help="Batches to write (default: one epoch).")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Write the batches a training run would draw (no training), one JSON line each."""
    from hybrid.io import check_output, write_text
    from hybrid.sampling import HybridBatchSampler
    from hybrid.train.data import load_table

    check_output(out, "file", what="--out")
    if steps is not None and steps < 1:
        raise HybridError(f"--steps: must be >= 1, got {steps}")
    sampler = HybridBatchSampler(load_table(pairs).index, strategy, batch_size, alpha, seed)
    batches = list(sampler.stream(0, len(sampler) if steps is None else steps))
    write_text(out, "".join(json.dumps(b.to_json(), ensure_ascii=False) + "\n" for b in batches))
    types = Counter(b.type for b in batches)
    excluded = {d: lg for d, lg in sampler.excluded_languages.items() if lg}
    typer.echo(f"wrote {len(batches)} batches ({', '.join(f'{k} {v}' for k, v in sorted(types.items()))}; "
               f"{len(sampler)} steps per epoch) to {out}"
               + (f"; too few ids for mono batches: {excluded}" if excluded else ""))
