"""The distributed trainer: `train(config) -> Path` through Ray Train's `TorchTrainer` (V2 API).

Every run goes through `TorchTrainer`, also with one worker (Ray starts locally in ~10 s
when no cluster is connected; `RAY_ADDRESS` or an initialised Ray is used as is). On CPU
workers talk over gloo, on GPUs over NCCL (Ray's default backends).

Before Ray starts, the driver checks everything a user can get wrong (config values, the
pairs table, the sampler's feasibility on the train and validation splits, the model spec),
so those fail as one-line `HybridError`s. It resolves the model to a directory once and
passes it to the workers, together with the config (workers must see the same paths: on a
cluster put the pairs table, the model and the storage path on shared storage).

Output directory `out`:
- `model/`: the best model (lowest validation loss), an HF + sentence-transformers dir;
- `train_summary.json`: steps, pairs seen, batches by type and language, times, pairs/s,
  validation history, best validation loss (docs/training.md lists every field);
- `train_log.jsonl`: one line per step (loss, batch type and language, lr, pairs/s);
- `ray/` (unless `run.storage_path` is set): Ray Train's run directory with checkpoints.

Resume: a rerun with the same storage path and run name continues from the latest
checkpoint (Ray restores it; `ray.train.get_checkpoint()` in the loop). Changing anything
but `RESUMABLE_CHANGES` (e.g. the strategy) for an existing run is refused, and so is a run
whose checkpoints are all damaged (before Ray starts: `check_run_checkpoints`).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from hybrid.errors import HybridError
from hybrid.io import atomic_path, write_json, write_text
from hybrid.train.config import RESUMABLE_CHANGES, TrainConfig

CONFIG_FILE = "hybrid_config.json"


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_resumable(run_dir: Path, config: TrainConfig) -> None:
    """Refuse to resume a run in `run_dir` that was started with a different config;
    record the config for a new run."""
    path = run_dir / CONFIG_FILE
    new = _flat(config.to_dict())
    if path.is_file():
        old = _flat(json.loads(path.read_text(encoding="utf-8")))
        diff = sorted(k for k in set(old) | set(new)
                      if k not in RESUMABLE_CHANGES and old.get(k) != new.get(k))
        if diff:
            k = diff[0]
            raise HybridError(f"{run_dir}: holds a run with {k}={old.get(k)!r}, not {new.get(k)!r}; "
                              "use another --out or --storage-path to start a new run")
    write_json(path, config.to_dict())


def precheck(config: TrainConfig):
    """Config, pairs table, sampler and model-file errors as HybridError before Ray starts and
    before anything is written (`train` records the config only after this); the model dir
    (a known baseline's overlay with its pooling and prefixes, `with_baseline_settings`),
    its config, tokenizer and weight files checked (`hybrid.model.check.check_model_files`);
    the `run.callbacks` importable; returns the starting model's directory (`checked_model_dir`;
    `train` checks the distillation teacher's the same way, also before any write)."""
    from hybrid.train.core import load_callback
    from hybrid.train.data import load_table, make_samplers

    config.validate()
    for spec in config.run.callbacks:  # importable here too (workers need the same PYTHONPATH)
        load_callback(spec)
    table = load_table(config.data.pairs)  # validates and derives the memory-mapped table once
    make_samplers(table, config, 0, config.run.workers)
    if config.data.hard_negatives and table.rows_without_hard_negatives:
        raise HybridError(f"--hard-negatives {config.data.hard_negatives}: some rows of "
                          f"{config.data.pairs} have no hard negatives")
    from hybrid.model.baselines import checked_model_dir

    return checked_model_dir(config.model.model)


def _start_ray(config: TrainConfig) -> bool:
    """Start a local Ray unless one is initialised or RAY_ADDRESS names a cluster (connected
    to with a bounded wait, `hybrid.raycluster`); True if started."""
    from hybrid.raycluster import ensure_ray

    cpus = os.cpu_count() or 1
    need = config.run.workers * (config.run.cpus_per_worker or 1)
    return ensure_ray(max(cpus, need), log_to_driver=True)


def _resolve_hardware(config: TrainConfig, started_locally: bool) -> TrainConfig:
    import ray

    r = config.run
    use_gpu = r.use_gpu
    if use_gpu is None:
        use_gpu = ray.cluster_resources().get("GPU", 0) >= r.workers
    cpus = r.cpus_per_worker
    if cpus is None and started_locally and not use_gpu:
        cpus = max(1, (os.cpu_count() or 1) // r.workers)
    return config.override(**{"run.use_gpu": bool(use_gpu), "run.cpus_per_worker": cpus})


def _worker_hybrid_error(exc: BaseException) -> HybridError | None:
    for failure in getattr(exc, "worker_failures", {}).values():
        if isinstance(failure, HybridError):
            return HybridError(str(failure).strip().splitlines()[-1])
    return None


def train(config: TrainConfig) -> Path:
    """Train a bi-encoder as `config` says; return the output directory (see module doc)."""
    import ray
    import ray.train
    from ray.train.torch import TorchTrainer

    from hybrid.model.baselines import checked_model_dir
    from hybrid.train.checkpoint import check_run_checkpoints
    from hybrid.train.loop import train_loop_per_worker

    model_path = precheck(config)  # every check before the first write (hybrid_config.json)
    teacher = config.optim.distill_teacher  # checked once, here, also before the first write
    teacher_path = checked_model_dir(teacher) if teacher is not None else None
    out = Path(config.out).resolve()
    # Ray Train workers run in their own working directory (on a cluster, on another node):
    # relative paths from the command line would not name the same files there.
    config = config.override(**{"data.pairs": str(Path(config.data.pairs).resolve()), "out": str(out)})
    storage = Path(config.run.storage_path).resolve() if config.run.storage_path else out / "ray"
    run_dir = storage / config.run.name
    check_resumable(run_dir, config)
    check_run_checkpoints(run_dir)

    started = _start_ray(config)
    try:
        config = _resolve_hardware(config, started)
        r = config.run
        resources = {"CPU": r.cpus_per_worker} if r.cpus_per_worker else None
        trainer = TorchTrainer(
            train_loop_per_worker,
            train_loop_config={"config": config.to_dict(), "model_path": str(model_path),
                               "teacher_path": str(teacher_path) if teacher_path else None,
                               "run_dir": str(run_dir), "progress_bar": sys.stderr.isatty()},
            scaling_config=ray.train.ScalingConfig(num_workers=r.workers, use_gpu=r.use_gpu,
                                                   resources_per_worker=resources),
            run_config=ray.train.RunConfig(
                name=r.name, storage_path=str(storage),
                failure_config=ray.train.FailureConfig(max_failures=r.max_failures),
                checkpoint_config=ray.train.CheckpointConfig(num_to_keep=r.keep_checkpoints),
                logging_config=ray.train.LoggingConfig(log_level="WARNING"),
            ),
        )
        try:
            result = trainer.fit()
        except ray.train.TrainingFailedError as exc:
            err = _worker_hybrid_error(exc)
            if err:
                raise err from None
            raise
    finally:
        if started:
            ray.shutdown()
    if result.checkpoint is None:
        raise HybridError(f"{run_dir}: training ended without a final checkpoint")
    with result.checkpoint.as_directory() as d:
        d = Path(d)
        with atomic_path(out / "model") as tmp:
            shutil.copytree(d / "model", tmp)
        summary = json.loads((d / "train_summary.json").read_text(encoding="utf-8"))
        write_text(out / "train_log.jsonl", (d / "train_log.jsonl").read_text(encoding="utf-8"))
    summary["checkpoint"] = result.checkpoint.path
    summary["storage_path"] = str(storage)
    write_json(out / "train_summary.json", summary)
    return out
