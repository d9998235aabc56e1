"""Training configuration: dataclasses with named YAML profiles (`tiny`, `quick`, `paper`).

A `TrainConfig` has four sections, each a dataclass: `model` (what to train), `data` (the
pairs table, the sampling strategy and the validation split), `optim` (loss and optimizer)
and `run` (steps, validation, hardware, Ray storage). A profile is a YAML file in
`hybrid/train/profiles/` with the same sections; fields it leaves out keep their defaults.
`None` in `bf16`, `freeze_embeddings` and `use_gpu` means "decide from the hardware".
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybrid.errors import HybridError
from hybrid.sampling import STRATEGIES, check_sampling

PROFILES_DIR = Path(__file__).parent / "profiles"
DISTILL_LOSSES = ("kl", "mse")  # optim.distill_loss (hybrid.train.distill)


def setting(default: Any = None, help: str = "", *, factory: Any = None) -> Any:
    """A config field and its help text: the one declaration `hybrid train --<name>` (its
    option is generated from the field: hybrid/cli/train.py), the flows' dotted
    `overrides` ("section.name") and the profiles' YAML keys all derive from."""
    meta = {"help": help}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class ModelArgs:
    """The encoder: a model spec (`hybrid.model.resolve_model`) and its BiEncoder settings."""

    model: str = setting("me5-small", "The starting model: me5-small, a model directory, an HF id "
                         "or a models:/ URI.")
    # None: from the starting model's directory (hybrid_encoder.json; for a known baseline
    # such as LaBSE or XLM-R, `with_baseline_settings`' table; else mean, "query: ", "passage: ")
    pooling: str | None = setting(None, "Pooling: mean or cls (default: the model's own).")
    query_prefix: str | None = setting(None, 'Query prefix (default: the model\'s own, else "query: ").')
    passage_prefix: str | None = setting(None, 'Passage prefix (default: the model\'s own, else "passage: ").')
    max_query_len: int = setting(64, "Maximum query length in tokens.")
    max_passage_len: int = setting(128, "Maximum passage length in tokens.")
    freeze_embeddings: bool | None = setting(None, "Freeze word embeddings (default: on CPU).")


@dataclass
class DataArgs:
    """The pairs table, how batches are drawn, and the held-out validation ids."""

    pairs: str | None = setting(None, "Directory with pairs.parquet (`hybrid data pairs`).")
    strategy: str = setting("hybrid", f"Batch strategy: {', '.join(STRATEGIES)}.")
    alpha: float = setting(0.5, "Share of mono batches for hybrid, in [0, 1].")
    alpha_schedule: str = setting("constant", "Alpha over the run for hybrid: constant, linear or "
                                  "cosine from --alpha (first step) to --alpha-end (last step).")
    alpha_end: float | None = setting(None, "Alpha at the last step of a linear/cosine "
                                      "--alpha-schedule, in [0, 1] (default: --alpha).")
    parallel_k: int = setting(1, "Parallel answers: a cross batch takes batch-size/k ids with k "
                              "pairs each, k distinct passage languages (hybrid, x-y).")
    batch_size: int = setting(32, "Global batch size: pairs per step over all workers.")
    hard_negatives: int = setting(0, "Hard negatives per pair (the table's hard_negatives column).")
    val_ids: int = setting(160, "xling_ids per dataset held out for validation.")
    val_batches: int = setting(6, "Validation batches (of batch size) per evaluation.")
    # Gradient caching (hybrid.train.grad_cache): embed this many texts at a time, so memory
    # does not grow with batch_size; None: one forward/backward over the local batch.
    grad_cache_chunk: int | None = setting(
        None, "Gradient caching: embed this many texts at a time (memory independent of "
        "--batch-size; about one more forward pass).")


@dataclass
class OptimArgs:
    """InfoNCE and AdamW (lr and weight decay as in the paper), linear warmup then decay."""

    temperature: float = setting(0.05, "InfoNCE temperature.")
    multi_positive: bool = setting(False, "InfoNCE with every passage of the query's xling_id "
                                   "in the batch as a positive (with --parallel-k).")
    lr: float = setting(3e-5, "AdamW learning rate.")
    weight_decay: float = setting(0.01, "AdamW weight decay.")
    warmup_steps: int = setting(10, "Linear warmup steps.")
    max_grad_norm: float = setting(1.0, "Gradient clipping norm.")
    # Keep what the base model knew (hybrid.train.distill): on cross steps, pull the mono
    # pairs' score matrix towards the frozen starting model's (or distill_teacher's); 0 = off
    # (no teacher loaded).
    distill_weight: float = setting(0.0, "Distillation from the frozen teacher (--distill-teacher) on cross "
                                    "steps: weight of the term (0: off).")
    distill_loss: str = setting("kl", f"Distillation divergence: {', '.join(DISTILL_LOSSES)}.")
    distill_temperature: float | None = setting(None, "Distillation score temperature (default: "
                                                "--temperature).")
    distill_teacher: str | None = setting(None, "Distillation teacher: a model directory, me5-small, "
                                          "an HF id or a models:/ URI, frozen (default: the starting "
                                          "model), e.g. an x-x-mono training.")


@dataclass
class RunArgs:
    """Length, validation and early stopping, hardware, and Ray Train storage."""

    steps: int = setting(130, "Maximum training steps.")
    val_every: int = setting(25, "Validate every k steps.")
    patience: int = setting(3, "Evaluations without a new best validation loss before stopping.")
    seed: int = setting(0, "Seed of sampling, initialisation and dropout.")
    bf16: bool | None = setting(None, "bf16 autocast (default: where the hardware supports it).")
    workers: int = setting(1, "Ray Train workers.")
    use_gpu: bool | None = setting(None, "One GPU per worker (default: when the cluster has them).")
    cpus_per_worker: int | None = setting(None, "CPUs per worker (default: the machine's cores / workers).")
    storage_path: str | None = setting(None, "Ray Train storage (default OUT/ray); a rerun with the "
                                       "same one resumes.")
    name: str = setting("train", "Ray run name under the storage path.")
    max_failures: int = setting(0, "Worker failures to recover from (restart from the latest checkpoint).")
    keep_checkpoints: int = setting(2, "Checkpoints kept.")
    # Per-step hooks: importable "module:function" specs, called as fn(trainer, record)
    # after every step on every worker (hybrid.train.core).
    callbacks: list[str] = setting(help="Per-step hook module:function, called as fn(trainer, "
                                   "record) on every worker (repeatable).", factory=list)


#: The config's sections, by name: `TrainConfig.from_dict`, the CLI's options and the flows'
#: override check read the fields from here.
SECTIONS: dict[str, type] = {"model": ModelArgs, "data": DataArgs, "optim": OptimArgs, "run": RunArgs}


@dataclass
class TrainConfig:
    """Everything `hybrid.train.train` needs; `out` is where model/ and the summary go."""

    model: ModelArgs = field(default_factory=ModelArgs)
    data: DataArgs = field(default_factory=DataArgs)
    optim: OptimArgs = field(default_factory=OptimArgs)
    run: RunArgs = field(default_factory=RunArgs)
    out: str | None = setting(None, "Output directory: model/, train_summary.json, train_log.jsonl, ray/.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "config") -> TrainConfig:
        """Build from nested dicts (sections of `SECTIONS`, and `out`); a section left out
        keeps its defaults; unknown sections or fields are errors."""
        args: dict[str, Any] = {name: kind() for name, kind in SECTIONS.items()}
        for key, value in (d or {}).items():
            if key == "out":
                args["out"] = None if value is None else str(value)
            elif key in SECTIONS:
                known = {f.name for f in dataclasses.fields(SECTIONS[key])}
                bad = sorted(set(value or {}) - known)
                if bad:
                    raise HybridError(f"{where}: unknown field(s) {', '.join(f'{key}.{b}' for b in bad)}")
                args[key] = SECTIONS[key](**(value or {}))
            else:
                raise HybridError(f"{where}: unknown section {key!r} (expected {', '.join(SECTIONS)}, out)")
        return cls(**args)

    def override(self, **dotted: Any) -> TrainConfig:
        """A copy with fields replaced, e.g. override(**{"data.alpha": 0.3}); None is skipped."""
        d = self.to_dict()
        for key, value in dotted.items():
            if value is None:
                continue
            section, _, name = key.partition(".")
            if name:
                if section not in d or name not in d[section]:
                    raise HybridError(f"config: unknown field {key!r} (fields: `hybrid train --help`, "
                                      "hybrid/train/config.py)")
                _check_type(key, value, typing.get_type_hints(SECTIONS[section])[name])
                d[section][name] = value
            elif section == "out":
                d[section] = value
            else:
                raise HybridError(f"config: unknown field {key!r} (expected section.name)")
        return TrainConfig.from_dict(d)

    def validate(self, require_io: bool = True) -> TrainConfig:
        """Raise HybridError (naming the field) for values training cannot use; without
        `require_io`, `data.pairs` and `out` may still be unset (a flow checks its settings
        before it has built the pairs table)."""
        def need(ok: bool, what: str) -> None:
            if not ok:
                raise HybridError(what)

        m, da, o, r = self.model, self.data, self.optim, self.run
        if require_io:
            need(da.pairs is not None, "--pairs: required (a directory from `hybrid data pairs`)")
            need(self.out is not None, "--out: required")
        check_sampling(da.strategy, da.alpha, da.batch_size, r.workers, alpha_end=da.alpha_end,
                       alpha_schedule=da.alpha_schedule, parallel_k=da.parallel_k, total_steps=r.steps)
        need(da.hard_negatives >= 0, f"data.hard_negatives: must be >= 0, got {da.hard_negatives}")
        need(da.val_ids >= 0 and da.val_batches >= 1, "data.val_ids must be >= 0 and data.val_batches >= 1")
        need(r.steps >= 1, f"--steps: must be >= 1, got {r.steps}")
        need(r.val_every >= 1 and r.patience >= 1, "run.val_every and run.patience must be >= 1")
        need(o.temperature > 0, f"optim.temperature: must be > 0, got {o.temperature}")
        need(o.lr > 0 and o.weight_decay >= 0 and o.warmup_steps >= 0 and o.max_grad_norm > 0,
             "optim: lr and max_grad_norm must be > 0, weight_decay and warmup_steps >= 0")
        need(0 <= o.distill_weight < float("inf"),
             f"optim.distill_weight: must be >= 0 (0: off), got {o.distill_weight}")
        need(o.distill_loss in DISTILL_LOSSES,
             f"optim.distill_loss: must be one of {', '.join(DISTILL_LOSSES)}, got {o.distill_loss!r}")
        need(o.distill_temperature is None or o.distill_temperature > 0,
             f"optim.distill_temperature: must be > 0, got {o.distill_temperature}")
        need(o.distill_teacher is None or (isinstance(o.distill_teacher, str) and o.distill_teacher.strip()
                                           and o.distill_weight > 0),
             "--distill-teacher: needs --distill-weight > 0 (the teacher only scores the distillation "
             f"term), got weight {o.distill_weight}")
        need(r.cpus_per_worker is None or r.cpus_per_worker >= 1, "run.cpus_per_worker: must be >= 1")
        need(r.max_failures >= -1 and r.keep_checkpoints >= 1,
             "run.max_failures must be >= -1 and run.keep_checkpoints >= 1")
        need(da.grad_cache_chunk is None or (isinstance(da.grad_cache_chunk, int) and da.grad_cache_chunk >= 1),
             f"--grad-cache-chunk: must be >= 1, got {da.grad_cache_chunk!r}")
        need(isinstance(r.callbacks, list) and all(isinstance(c, str) and ":" in c for c in r.callbacks),
             f"run.callbacks: expected a list of 'module:function' strings, got {r.callbacks!r}")
        need(m.max_query_len >= 3 and m.max_passage_len >= 3, "model: max lengths must be >= 3")
        return self


def _check_type(key: str, value: Any, hint: Any) -> None:
    """HybridError unless `value` fits the field's type (an int where a float is declared is
    fine; a bool is not an int)."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    kinds = [a for a in typing.get_args(hint) if a is not type(None)] if union else [hint]
    for kind in kinds:
        base = typing.get_origin(kind) or kind
        if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return
        if base is int and isinstance(value, int) and not isinstance(value, bool):
            return
        if base in (str, bool) and isinstance(value, base):
            return
        if base is list and isinstance(value, list):
            return
    names = " or ".join(getattr(k, "__name__", str(k)) for k in kinds)
    raise HybridError(f"config: {key} must be {names}, got {value!r}")


def settings() -> list[tuple[str, dataclasses.Field, Any]]:
    """Every setting as (dotted name, field, type): `model.model`, ..., `run.callbacks`, `out`.
    The CLI generates `hybrid train`'s options from this list."""
    out = []
    for section, kind in SECTIONS.items():
        hints = typing.get_type_hints(kind)
        out += [(f"{section}.{f.name}", f, hints[f.name]) for f in dataclasses.fields(kind)]
    out_field = next(f for f in dataclasses.fields(TrainConfig) if f.name == "out")
    return out + [("out", out_field, typing.get_type_hints(TrainConfig)["out"])]


def resolve(profile: str, overrides: dict[str, Any] | None = None, require_io: bool = False) -> TrainConfig:
    """The profile (`load_profile`) with dotted `overrides` applied (None values skipped),
    validated: the one way the CLI, the training task and the flows turn settings into a
    config. Raises HybridError naming a bad profile, field or value."""
    if overrides is not None and not isinstance(overrides, dict):
        raise HybridError(f"overrides: expected a mapping of dotted fields to values, got {overrides!r}")
    try:
        cfg = load_profile(profile).override(**(overrides or {}))
    except TypeError as exc:
        raise HybridError(f"overrides: {exc}") from None
    return cfg.validate(require_io=require_io)


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def load_profile(name: str) -> TrainConfig:
    """A named profile (`tiny`, `quick`, `paper`) or the path of a YAML file."""
    import yaml

    path = Path(name)
    if not (name.endswith((".yaml", ".yml")) and path.is_file()):
        path = PROFILES_DIR / f"{name}.yaml"
        if not path.is_file():
            raise HybridError(f"--profile: unknown profile {name!r} (choose from {', '.join(profile_names())} "
                              "or give a .yaml file)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise HybridError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise HybridError(f"{path}: expected a mapping of sections")
    try:
        return TrainConfig.from_dict(data, where=str(path))
    except TypeError as exc:
        raise HybridError(f"{path}: {exc}") from None


# Fields that may change when a run is resumed from its storage path.
RESUMABLE_CHANGES = ("run.steps", "run.patience", "run.workers", "run.use_gpu",
                     "run.cpus_per_worker", "run.max_failures", "run.keep_checkpoints",
                     "run.storage_path", "out", "data.pairs", "data.grad_cache_chunk",
                     "run.callbacks")
