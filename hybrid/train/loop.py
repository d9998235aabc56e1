"""The Ray Train adapter (`train_loop_per_worker`) and the pairs-table helpers it uses.

Each Ray Train worker loads the pairs table, holds out the same validation ids
(`split_validation`), and walks the same global batch stream (`make_samplers`), keeping
its rank's slice of every batch. The training itself is `hybrid.train.core.Trainer` (no
Ray in it); this module maps Ray onto it:

- rank, world size and device from `ray.train`; the collective is torch.distributed
  (`hybrid.train.collective.TorchDist`, the process group Ray Train set up);
- resume: `ray.train.get_checkpoint()` (or a newer sealed one in the run directory,
  `pick_checkpoint`), verified (`read_state`: a damaged one falls back to the newest intact
  earlier checkpoint, else a one-line error), into `Trainer.load_state_dict`;
- after each evaluation (`Trainer.fit`'s `on_eval`): rank 0 writes `Trainer.state_dict()`
  as a sealed checkpoint (`hybrid.train.checkpoint`) and every rank calls
  `ray.train.report`; the last report also carries `model/`, `train_summary.json` and
  `train_log.jsonl` (`Trainer.write_outputs`), which the driver copies to the output dir;
- a Ray tqdm bar on rank 0 when the driver has a terminal.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hybrid.train.checkpoint import pick_checkpoint, read_state, write_state
from hybrid.train.config import TrainConfig
from hybrid.train.core import Trainer, say
from hybrid.train.data import VAL_SEED, Texts, load_table, make_samplers, split_validation

# The pairs-table helpers live in hybrid.train.data (out of core: hybrid.data.table).
__all__ = ["VAL_SEED", "Texts", "make_samplers", "split_validation", "train_loop_per_worker"]


# ----------------------------------------------------------------- the Ray adapter
def train_loop_per_worker(loop_config: dict) -> None:
    """Ray Train entry point; `loop_config` = {"config": TrainConfig dict, "model_path": str,
    "teacher_path": str or None (the distillation teacher's dir; None: the starting model),
    "run_dir": str (checkpoints of this run), "progress_bar": bool}."""
    import ray.train
    import ray.train.torch
    import torch

    from hybrid.encoder import BiEncoder
    from hybrid.train.collective import default

    cfg = TrainConfig.from_dict(loop_config["config"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    if device.type == "cpu" and cfg.run.cpus_per_worker:
        torch.set_num_threads(cfg.run.cpus_per_worker)

    table = load_table(cfg.data.pairs)  # memory-mapped: one page cache for the node's workers
    sampler, val_sampler = make_samplers(table, cfg, rank, world)
    texts = Texts(table)
    val_batches = [val_sampler.local(b) for b in val_sampler.stream(0, cfg.data.val_batches)] if val_sampler else []
    m = cfg.model

    def starting_model() -> BiEncoder:
        return BiEncoder.from_pretrained(loop_config["model_path"], pooling=m.pooling,
                                         query_prefix=m.query_prefix, passage_prefix=m.passage_prefix,
                                         max_query_len=m.max_query_len, max_passage_len=m.max_passage_len)

    def teacher():
        """The starting model, or `optim.distill_teacher` (`hybrid.train.distill.load_teacher`)."""
        if not loop_config.get("teacher_path"):
            return starting_model()
        from hybrid.train.distill import load_teacher

        return load_teacher(loop_config["teacher_path"], m)

    encoder = starting_model()
    hooks = []
    bar = None
    if rank == 0 and loop_config.get("progress_bar"):
        from ray.experimental.tqdm_ray import tqdm

        bar = tqdm(total=cfg.run.steps, desc="train")
        hooks.append(lambda tr, rec: (bar.set_description(f"train loss {rec['loss']:.3f}"), bar.update(1)))
    trainer = Trainer(encoder, cfg, device, texts, collective=default(),
                      local=sampler.local, val_batches=val_batches, hooks=hooks,
                      teacher=teacher)  # distillation's teacher, loaded only if used

    # ---- resume
    ckpt = ray.train.get_checkpoint()
    run_dir = Path(loop_config["run_dir"]) if loop_config.get("run_dir") else None
    local = ckpt is None or Path(ckpt.path).is_dir()  # local or shared storage
    resume_dir = pick_checkpoint(Path(ckpt.path) if ckpt else None, run_dir) if local else None
    state = None
    if resume_dir is not None:
        state, read = read_state(resume_dir)
        if read != resume_dir:
            say(f"hybrid train: checkpoint {resume_dir} is damaged (checksum mismatch); resuming from {read}")
    elif ckpt:
        with ckpt.as_directory() as d:
            state, _ = read_state(Path(d))
    if state is not None:
        trainer.load_state_dict(state)
    start = trainer.step_count
    trainer.st["segments"].append({"start_step": start, "workers": world, "device": device.type})
    if rank == 0:
        say(f"hybrid train: {'resuming at' if state and 'trainable' in state else 'starting at'} step "
            f"{start}/{cfg.run.steps}; {world} worker(s) on {device.type}, bf16={trainer.bf16}, "
            f"frozen word embeddings={trainer.freeze}, {len(sampler)} steps/epoch, "
            f"{len(val_batches)} validation batches/worker")
    if bar:
        bar.update(start)

    def report(metrics: dict, final: bool = False) -> None:
        step = trainer.step_count
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if rank == 0:
                write_state(Path(tmp), trainer.state_dict())
                if final:
                    trainer.write_outputs(Path(tmp), {"excluded_languages": sampler.excluded_languages})
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=checkpoint,
                             checkpoint_dir_name=f"step-{step:06d}{'-final' if final else ''}")

    trainer.fit(sampler.global_batch, on_eval=report)
    if bar:
        bar.close()
    report({"step": trainer.step_count, "final": True, "best_val_loss": trainer.st["best"].get("loss")},
           final=True)
