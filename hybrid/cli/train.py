"""`hybrid train` (Ray Train) and `hybrid batches` (inspect a sampling mixture, no training)."""

from __future__ import annotations

import dataclasses
import inspect
import json
import types
import typing
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer

from hybrid.errors import HybridError


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app; their options are generated from the config
    dataclasses (`hybrid.train.config.settings`) when the app is built."""
    app.command("train")(train_command())
    app.command("batches")(batches_command())


def _option(dotted: str, f: dataclasses.Field, hint: Any) -> inspect.Parameter:
    """The Typer option of one setting: `--<name>` (underscores as dashes), `--x/--no-x` for a
    flag, repeatable for a list; default None (keep the profile's value)."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    kind = next(a for a in typing.get_args(hint) if a is not type(None)) if union else hint
    flag = "--" + f.name.replace("_", "-")
    decl = f"{flag}/--no-{flag[2:]}" if kind is bool else flag
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[kind | None, typer.Option(decl, help=f.metadata.get("help"))])


def setting_options(names: list[str] | None = None) -> dict[str, inspect.Parameter]:
    """{dotted setting: its option} for every setting (or those in `names`); field names are
    unique over the sections, so each is its own `--name`."""
    from hybrid.train.config import settings

    found = [(d, f, h) for d, f, h in settings() if names is None or d in names]
    params = {d: _option(d, f, h) for d, f, h in found}
    clash = sorted({p.name for p in params.values() if [q.name for q in params.values()].count(p.name) > 1})
    if clash:
        raise RuntimeError(f"config fields share an option name: {clash}")
    return params


def train_command():
    """`hybrid train`: --profile plus one option per setting, each overriding the profile."""
    options = setting_options()
    dotted = {p.name: d for d, p in options.items()}
    profile = inspect.Parameter("profile", inspect.Parameter.KEYWORD_ONLY, default="quick",
                                annotation=Annotated[str, typer.Option("--profile", help="tiny, quick, paper, or a .yaml file.")])

    def train_cmd(**values: Any) -> None:
        """Train a bi-encoder with hybrid batches on Ray Train; resumes from its storage path.
        Every option overrides the profile's value (see docs/training.md)."""
        from hybrid.io import check_output, output_lock
        from hybrid.train import train
        from hybrid.train.config import resolve

        prof = values.pop("profile")
        overrides = {dotted[k]: str(v) if isinstance(v, Path) else v for k, v in values.items()}
        if overrides.get("run.callbacks") == []:
            overrides["run.callbacks"] = None  # none given: keep the profile's
        if overrides.get("out") is not None:
            check_output(Path(overrides["out"]), "dir", what="--out")
        cfg = resolve(prof, overrides, require_io=True)
        out = Path(cfg.out)
        with output_lock(out):
            result = train(cfg)
        s = json.loads((result / "train_summary.json").read_text(encoding="utf-8"))
        best = s["best_val_loss"]
        typer.echo(f"trained {s['steps']} steps ({s['pairs_seen']} pairs, {s['pairs_per_s']} pairs/s); "
                   f"best validation loss {best if best is not None else 'n/a'}; model in {result / 'model'}")

    train_cmd.__signature__ = inspect.Signature([profile, *options.values()])  # type: ignore[attr-defined]
    return train_cmd


def batches_command():
    """`hybrid batches`: the sampling settings' options (generated like `hybrid train`'s),
    defaulting to the dataclasses' defaults."""
    options = setting_options(["data.strategy", "data.alpha", "data.alpha_schedule", "data.alpha_end",
                               "data.parallel_k", "data.batch_size", "run.seed"])
    dotted = {p.name: d for d, p in options.items()}
    fixed = [
        inspect.Parameter("pairs", inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[
            Path, typer.Option("--pairs", help="Directory with pairs.parquet (`hybrid data pairs`).")]),
        inspect.Parameter("out", inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[
            Path, typer.Option("--out", help="JSON-lines file, one batch per line.")]),
        inspect.Parameter("steps", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
            int | None, typer.Option("--steps", help="Batches to write (default: one epoch); an "
                                     "--alpha-schedule spans them, as it spans a run's --steps.")]),
    ]

    def batches_cmd(pairs: Path, out: Path, steps: int | None, **values: Any) -> None:
        """Write the batches a training run would draw (no training), one JSON line each."""
        from hybrid.train.config import TrainConfig

        cfg = TrainConfig().override(**{dotted[k]: v for k, v in values.items()})
        d = cfg.data
        _write_batches(pairs, out, steps, d.strategy, d.alpha, d.batch_size, cfg.run.seed,
                       alpha_end=d.alpha_end, alpha_schedule=d.alpha_schedule, parallel_k=d.parallel_k)

    batches_cmd.__signature__ = inspect.Signature([*fixed, *options.values()])  # type: ignore[attr-defined]
    return batches_cmd


def _write_batches(pairs: Path, out: Path, steps: int | None, strategy: str, alpha: float,
                   batch_size: int, seed: int, *, alpha_end: float | None = None,
                   alpha_schedule: str = "constant", parallel_k: int = 1) -> None:
    from hybrid.io import check_output, write_text
    from hybrid.sampling import HybridBatchSampler
    from hybrid.train.data import load_table

    check_output(out, "file", what="--out")
    if steps is not None and steps < 1:
        raise HybridError(f"--steps: must be >= 1, got {steps}")
    index = load_table(pairs).index
    recipe = {"alpha_end": alpha_end, "alpha_schedule": alpha_schedule, "parallel_k": parallel_k}
    sampler = HybridBatchSampler(index, strategy, batch_size, alpha, seed, **recipe, total_steps=steps or 1)
    if steps is None and alpha_schedule != "constant":  # the schedule spans the epoch written
        sampler = HybridBatchSampler(index, strategy, batch_size, alpha, seed, **recipe,
                                     total_steps=len(sampler))
    batches = list(sampler.stream(0, len(sampler) if steps is None else steps))
    write_text(out, "".join(json.dumps(b.to_json(), ensure_ascii=False) + "\n" for b in batches))
    types = Counter(b.type for b in batches)
    excluded = {d: lg for d, lg in sampler.excluded_languages.items() if lg}
    typer.echo(f"wrote {len(batches)} batches ({', '.join(f'{k} {v}' for k, v in sorted(types.items()))}; "
               f"{len(sampler)} steps per epoch) to {out}"
               + (f"; too few ids for mono batches: {excluded}" if excluded else ""))
