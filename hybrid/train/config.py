"""Training configuration: dataclasses with named YAML profiles (`tiny`, `quick`, `paper`).

A `TrainConfig` has four sections, each a dataclass: `model` (what to train), `data` (the
pairs table, the sampling strategy and the validation split), `optim` (loss and optimizer)
and `run` (steps, validation, hardware, Ray storage). A profile is a YAML file in
`hybrid/train/profiles/` with the same sections; fields it leaves out keep their defaults.
`None` in `bf16`, `freeze_embeddings` and `use_gpu` means "decide from the hardware".
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybrid.errors import HybridError
from hybrid.sampling import STRATEGIES

PROFILES_DIR = Path(__file__).parent / "profiles"


@dataclass
class ModelArgs:
    """The encoder: a model spec (`hybrid.model.resolve_model`) and its BiEncoder settings."""

    model: str = "me5-small"
    # None: from the starting model's directory (hybrid_encoder.json; for a known baseline
    # such as LaBSE or XLM-R, `with_baseline_settings`' table; else mean, "query: ", "passage: ")
    pooling: str | None = None
    query_prefix: str | None = None
    passage_prefix: str | None = None
    max_query_len: int = 64
    max_passage_len: int = 128
    freeze_embeddings: bool | None = None  # None: frozen on CPU, trained on GPU


@dataclass
class DataArgs:
    """The pairs table, how batches are drawn, and the held-out validation ids."""

    pairs: str | None = None     # a directory holding pairs.parquet (`hybrid data pairs`)
    strategy: str = "hybrid"
    alpha: float = 0.5
    batch_size: int = 32         # global: pairs per step over all workers
    hard_negatives: int = 0      # per pair, from the table's hard_negatives column
    val_ids: int = 160           # xling_ids per dataset held out for validation
    val_batches: int = 6         # validation batches (of batch_size) per evaluation
    # Gradient caching (hybrid.train.grad_cache): embed this many texts at a time, so memory
    # does not grow with batch_size; None: one forward/backward over the local batch.
    grad_cache_chunk: int | None = None


@dataclass
class OptimArgs:
    """InfoNCE and AdamW (lr and weight decay as in the paper), linear warmup then decay."""

    temperature: float = 0.05
    lr: float = 3e-5
    weight_decay: float = 0.01
    warmup_steps: int = 10
    max_grad_norm: float = 1.0


@dataclass
class RunArgs:
    """Length, validation and early stopping, hardware, and Ray Train storage."""

    steps: int = 130
    val_every: int = 25
    patience: int = 3            # evaluations without a new best validation loss
    seed: int = 0
    bf16: bool | None = None     # None: bf16 autocast where the hardware supports it
    workers: int = 1
    use_gpu: bool | None = None  # None: when the cluster has a GPU per worker
    cpus_per_worker: int | None = None  # None: the machine's cores / workers (local Ray)
    storage_path: str | None = None     # None: <out>/ray
    name: str = "train"          # Ray run name under storage_path
    max_failures: int = 0        # FailureConfig: restarts from the latest checkpoint
    keep_checkpoints: int = 2
    # Per-step hooks: importable "module:function" specs, called as fn(trainer, record)
    # after every step on every worker (hybrid.train.core).
    callbacks: list[str] = field(default_factory=list)


@dataclass
class TrainConfig:
    """Everything `hybrid.train.train` needs; `out` is where model/ and the summary go."""

    model: ModelArgs = field(default_factory=ModelArgs)
    data: DataArgs = field(default_factory=DataArgs)
    optim: OptimArgs = field(default_factory=OptimArgs)
    run: RunArgs = field(default_factory=RunArgs)
    out: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "config") -> TrainConfig:
        """Build from nested dicts; unknown sections or fields are errors."""
        kinds = {"model": ModelArgs, "data": DataArgs, "optim": OptimArgs, "run": RunArgs}
        args: dict[str, Any] = {}
        for key, value in (d or {}).items():
            if key == "out":
                args["out"] = None if value is None else str(value)
            elif key in kinds:
                known = {f.name for f in dataclasses.fields(kinds[key])}
                bad = sorted(set(value or {}) - known)
                if bad:
                    raise HybridError(f"{where}: unknown field(s) {', '.join(f'{key}.{b}' for b in bad)}")
                args[key] = kinds[key](**(value or {}))
            else:
                raise HybridError(f"{where}: unknown section {key!r} (expected model, data, optim, run, out)")
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
                    raise HybridError(f"config: unknown field {key!r}")
                d[section][name] = value
            else:
                d[section] = value
        return TrainConfig.from_dict(d)

    def validate(self) -> TrainConfig:
        """Raise HybridError (naming the field) for values training cannot use."""
        def need(ok: bool, what: str) -> None:
            if not ok:
                raise HybridError(what)

        m, da, o, r = self.model, self.data, self.optim, self.run
        need(da.pairs is not None, "--pairs: required (a directory from `hybrid data pairs`)")
        need(self.out is not None, "--out: required")
        need(da.strategy in STRATEGIES, f"--strategy: unknown {da.strategy!r} (choose from {', '.join(STRATEGIES)})")
        need(isinstance(da.alpha, (int, float)) and math.isfinite(da.alpha) and 0 <= da.alpha <= 1,
             f"--alpha: must be in [0, 1], got {da.alpha!r}")
        need(da.batch_size >= 2, f"--batch-size: must be >= 2, got {da.batch_size}")
        need(r.workers >= 1, f"--workers: must be >= 1, got {r.workers}")
        need(da.batch_size % r.workers == 0,
             f"--batch-size: {da.batch_size} is not divisible by the {r.workers} workers")
        need(da.hard_negatives >= 0, f"data.hard_negatives: must be >= 0, got {da.hard_negatives}")
        need(da.val_ids >= 0 and da.val_batches >= 1, "data.val_ids must be >= 0 and data.val_batches >= 1")
        need(r.steps >= 1, f"--steps: must be >= 1, got {r.steps}")
        need(r.val_every >= 1 and r.patience >= 1, "run.val_every and run.patience must be >= 1")
        need(o.temperature > 0, f"optim.temperature: must be > 0, got {o.temperature}")
        need(o.lr > 0 and o.weight_decay >= 0 and o.warmup_steps >= 0 and o.max_grad_norm > 0,
             "optim: lr and max_grad_norm must be > 0, weight_decay and warmup_steps >= 0")
        need(r.cpus_per_worker is None or r.cpus_per_worker >= 1, "run.cpus_per_worker: must be >= 1")
        need(r.max_failures >= -1 and r.keep_checkpoints >= 1,
             "run.max_failures must be >= -1 and run.keep_checkpoints >= 1")
        need(da.grad_cache_chunk is None or (isinstance(da.grad_cache_chunk, int) and da.grad_cache_chunk >= 1),
             f"--grad-cache-chunk: must be >= 1, got {da.grad_cache_chunk!r}")
        need(isinstance(r.callbacks, list) and all(isinstance(c, str) and ":" in c for c in r.callbacks),
             f"run.callbacks: expected a list of 'module:function' strings, got {r.callbacks!r}")
        need(m.max_query_len >= 3 and m.max_passage_len >= 3, "model: max lengths must be >= 3")
        return self


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
