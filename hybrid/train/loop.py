"""The per-worker training loop, run by every Ray Train worker (`hybrid.train.trainer`).

Each worker loads the pairs table, holds out the same validation ids, and walks the same
global batch stream (`HybridBatchSampler`), keeping its rank's slice of every batch. A step:
embed the local questions and passages (bf16 autocast when on), InfoNCE against the
candidates gathered from all workers (`hybrid.loss`), backward, gradients averaged over
workers (one flat all-reduce; the model is not wrapped in DDP because queries and passages
go through it in two forward calls), clip, AdamW, linear warmup/decay.

Every `val_every` steps the validation loss (fixed batches of held-out ids, averaged over
workers) decides early stopping; rank 0 then writes a checkpoint (`state.pt`: trainable
weights, optimizer, scheduler, the best weights so far, counters, history; then its sha256
in `state.sha256`) and every rank calls `ray.train.report`. On start the loop resumes from
`ray.train.get_checkpoint()`, verified (a damaged one falls back to the newest intact earlier
checkpoint, else a one-line error); it is read with `torch.load(weights_only=True)`. The
last report carries `model/` (the best weights, `BiEncoder.save`), `train_summary.json` and
`train_log.jsonl`, which the driver copies to the output directory.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hybrid.errors import HybridError
from hybrid.loss import group_keys, info_nce_loss
from hybrid.sampling import Batch, HybridBatchSampler
from hybrid.train.config import TrainConfig
from hybrid.train.summary import BatchCounter, make_summary

STATE_FILE = "state.pt"
STATE_SUM = "state.sha256"  # sha256 of state.pt, written after it: a checkpoint's seal
# Testing aid for FailureConfig retries: "STEP:PATH" makes the last rank fail once after
# STEP (PATH records that it did).
FAIL_ONCE_ENV = "HYBRID_TRAIN_FAIL_ONCE"
# Testing aid for real crashes: "STEP:PATH" makes the last rank write its pid to PATH after
# STEP and wait (up to 10 minutes) to be killed; a restarted worker finds PATH and goes on.
PAUSE_ENV = "HYBRID_TRAIN_PAUSE_AT"
VAL_SEED = 0  # validation batches do not depend on the run's seed: runs stay comparable


# --------------------------------------------------------------------------- data
def split_validation(table: pd.DataFrame, val_ids: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, val): per dataset the `val_ids` xling_ids with the smallest blake2b hash of
    "dataset/xling_id" are held out, in every language. Deterministic, seed-independent."""
    if val_ids == 0:
        return table, table.iloc[0:0]
    val_keys = set()
    for ds, grp in table.groupby("dataset", sort=True):
        ids = sorted(set(grp["xling_id"]))
        if val_ids >= len(ids):
            raise HybridError(f"data.val_ids: {val_ids} >= the {len(ids)} ids of dataset {ds!r}")
        ranked = sorted(ids, key=lambda x: hashlib.blake2b(f"{ds}/{x}".encode(), digest_size=8).digest())
        val_keys.update((ds, x) for x in ranked[:val_ids])
    is_val = [(d, x) in val_keys for d, x in zip(table["dataset"], table["xling_id"], strict=True)]
    is_val = np.array(is_val, dtype=bool)
    return table[~is_val].reset_index(drop=True), table[is_val].reset_index(drop=True)


def make_samplers(table: pd.DataFrame, cfg: TrainConfig, rank: int = 0, world: int = 1):
    """(train sampler, validation sampler or None) over the split of `table`."""
    d = cfg.data
    train_t, val_t = split_validation(table, d.val_ids)
    train = HybridBatchSampler(train_t, d.strategy, d.batch_size, d.alpha, cfg.run.seed, rank, world)
    val = None
    if len(val_t):
        try:
            val = HybridBatchSampler(val_t, d.strategy, d.batch_size, d.alpha, VAL_SEED, rank, world)
        except HybridError as exc:
            raise HybridError(f"validation split (data.val_ids={d.val_ids}): {exc}") from None
    return train, val


class Texts:
    """(dataset, xling_id, lang) -> question, positive, hard negatives."""

    def __init__(self, table: pd.DataFrame):
        self.rows = {(d, x, lg): (q, p, list(h) if h is not None else [])
                     for d, x, lg, q, p, h in zip(table["dataset"], table["xling_id"], table["lang"],
                                                   table["question"], table["positive"],
                                                   table["hard_negatives"], strict=True)}

    def batch(self, batch: Batch, hard: int, seed: int) -> tuple[list[str], list[str], list[str]]:
        """Questions, positives, and `hard` hard negatives per pair (drawn with a generator
        seeded by (seed, step), repeating when a row has fewer)."""
        rng = np.random.default_rng([seed, batch.step])
        qs, ps, hs = [], [], []
        for p in batch.pairs:
            qs.append(self.rows[(batch.dataset, p.xling_id, p.q_lang)][0])
            pos, negs = self.rows[(batch.dataset, p.xling_id, p.p_lang)][1:]
            ps.append(pos)
            if hard:
                if not negs:
                    raise HybridError(f"data.hard_negatives={hard}: no hard negatives for "
                                      f"{batch.dataset}/{p.xling_id}/{p.p_lang}")
                hs += [negs[i] for i in rng.choice(len(negs), hard, replace=len(negs) < hard)]
        return qs, ps, hs


# -------------------------------------------------------------------- checkpoints
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_state(d: Path, state: dict) -> None:
    """`state.pt`, then its sha256 in `state.sha256` (a checkpoint without a matching seal
    was cut short or damaged)."""
    torch.save(state, d / STATE_FILE)
    (d / STATE_SUM).write_text(_sha256(d / STATE_FILE) + "\n", encoding="utf-8")


def state_intact(d: Path) -> bool:
    """True if `d` holds a state.pt whose sha256 matches its seal."""
    try:
        return (d / STATE_SUM).read_text(encoding="utf-8").strip() == _sha256(d / STATE_FILE)
    except OSError:
        return False


def _step_of(d: Path) -> int:
    try:
        return int(d.name.split("-")[1])
    except (IndexError, ValueError):
        return -1


def read_state(d: Path) -> tuple[dict, Path]:
    """The training state of checkpoint dir `d`, verified; if `d` is damaged, the newest
    intact earlier checkpoint beside it (`step-*` in the same run directory) is used.
    Returns (state, the directory read); HybridError if none is intact."""
    candidates = [d] + sorted((p for p in d.parent.glob("step-*")
                               if p != d and 0 <= _step_of(p) < _step_of(d)), key=_step_of, reverse=True)
    for c in candidates:
        if state_intact(c):
            if c != d:
                _say(f"hybrid train: checkpoint {d} is damaged (checksum mismatch); resuming from {c}")
            try:
                return torch.load(c / STATE_FILE, map_location="cpu", weights_only=True), c
            except Exception as exc:  # weights_only refuses arbitrary pickled objects
                raise HybridError(f"{c / STATE_FILE}: not a training state written by hybrid "
                                  f"({type(exc).__name__}); refusing to unpickle it") from None
    raise HybridError(f"{d}: checkpoint damaged (state.pt does not match state.sha256) and no intact "
                      f"earlier checkpoint in {d.parent}; remove it to start the run over")


def pick_checkpoint(given: Path | None, run_dir: Path | None) -> Path | None:
    """The checkpoint to resume from: the one Ray hands back (`given`), unless the run
    directory holds a newer intact one. A worker killed right after persisting a checkpoint
    can die before Ray's controller registers it; that checkpoint is complete (sealed) and
    is used rather than lost."""
    newest = None
    if run_dir is not None and run_dir.is_dir():
        intact = [p for p in run_dir.glob("step-*") if _step_of(p) >= 0 and state_intact(p)]
        newest = max(intact, key=_step_of, default=None)
    if given is None or (newest is not None and _step_of(newest) > _step_of(given)):
        return newest
    return given


# -------------------------------------------------------------------------- model
def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def prepare_encoder(encoder, device: torch.device, freeze: bool):
    """Make `encoder` ready to train on `device`: word embeddings frozen if `freeze`, moved,
    training mode; on CPU, dropout masks from `hybrid.train.dropout` (same probabilities,
    a quarter of the generator's draws). Returns `encoder`."""
    from hybrid.train.dropout import use_fast_dropout

    if freeze:
        encoder.freeze_word_embeddings()
    if device.type == "cpu":
        use_fast_dropout(encoder.model)
    return encoder.to(device).train()


def trainable(encoder) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in encoder.named_parameters() if p.requires_grad}


def snapshot(params: dict[str, torch.nn.Parameter]) -> dict[str, torch.Tensor]:
    return {n: p.detach().to("cpu", copy=True) for n, p in params.items()}


def make_optimizer(params: dict[str, torch.nn.Parameter], cfg: TrainConfig):
    """Fused AdamW (no decay on biases and LayerNorm), linear warmup then linear decay to 0."""
    o, steps = cfg.optim, cfg.run.steps
    decay = [p for n, p in params.items() if not (n.endswith("bias") or "LayerNorm" in n)]
    no_decay = [p for n, p in params.items() if n.endswith("bias") or "LayerNorm" in n]
    # fused: one kernel over all parameters (CPU and CUDA); the per-tensor default costs
    # 0.6 s per step on 2 cores when the 96 M word embeddings are trained.
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": o.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=o.lr, fused=True)

    def schedule(step: int) -> float:
        if step < o.warmup_steps:
            return (step + 1) / (o.warmup_steps + 1)
        return max(0.0, (steps - step) / max(1, steps - o.warmup_steps))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, schedule)


def average_gradients(params: list[torch.nn.Parameter], world: int) -> None:
    """Average gradients over workers with one flat all-reduce (no-op on one worker)."""
    if world == 1:
        return
    import torch.distributed as dist
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params]
    flat = _flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    flat /= world
    for g, s in zip(grads, _unflatten_dense_tensors(flat, grads), strict=True):
        g.copy_(s)


def mean_over_workers(x: float, world: int, device) -> float:
    if world == 1:
        return float(x)
    import torch.distributed as dist

    t = torch.tensor([float(x)], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / world


def batch_loss(encoder, texts: Texts, batch: Batch, cfg: TrainConfig, bf16: bool) -> torch.Tensor:
    """InfoNCE of this worker's slice (differentiable unless called under no_grad)."""
    h = cfg.data.hard_negatives
    qs, ps, hs = texts.batch(batch, h, cfg.run.seed)
    dev = encoder.device
    with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=bf16):
        q = encoder.embed_texts(qs, "query")  # length-sorted chunks: less padding
        p_all = encoder.embed_texts(ps + hs, "passage")
    b = len(qs)
    hard = p_all[b:].reshape(b, h, -1) if h else None
    keys = group_keys([f"{batch.dataset}/{p.xling_id}" for p in batch.pairs], device=dev)
    return info_nce_loss(q, p_all[:b], keys, hard=hard, temperature=cfg.optim.temperature)


@torch.no_grad()
def validation_loss(encoder, texts: Texts, batches: list[Batch], cfg: TrainConfig, bf16: bool,
                    world: int) -> float:
    encoder.eval()
    try:
        losses = [batch_loss(encoder, texts, b, cfg, bf16).item() for b in batches]
    finally:
        encoder.train()
    return mean_over_workers(sum(losses) / len(losses), world, encoder.device)


# --------------------------------------------------------------------------- loop
def train_loop_per_worker(loop_config: dict) -> None:
    """Ray Train entry point; `loop_config` = {"config": TrainConfig dict, "model_path": str}."""
    import ray.train
    import ray.train.torch
    from ray.experimental.tqdm_ray import tqdm

    from hybrid.data.pairs import load_pairs
    from hybrid.encoder import BiEncoder

    t_start = time.perf_counter()
    cfg = TrainConfig.from_dict(loop_config["config"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    if device.type == "cpu" and cfg.run.cpus_per_worker:
        torch.set_num_threads(cfg.run.cpus_per_worker)
    bf16 = bf16_supported(device) if cfg.run.bf16 is None else cfg.run.bf16
    freeze = device.type == "cpu" if cfg.model.freeze_embeddings is None else cfg.model.freeze_embeddings

    table = load_pairs(cfg.data.pairs)
    sampler, val_sampler = make_samplers(table, cfg, rank, world)
    texts = Texts(table)
    val_batches = [val_sampler.local(b) for b in val_sampler.stream(0, cfg.data.val_batches)] if val_sampler else []

    m = cfg.model
    encoder = BiEncoder.from_pretrained(loop_config["model_path"], pooling=m.pooling,
                                        query_prefix=m.query_prefix, passage_prefix=m.passage_prefix,
                                        max_query_len=m.max_query_len, max_passage_len=m.max_passage_len)
    prepare_encoder(encoder, device, freeze)
    params = trainable(encoder)
    opt, sched = make_optimizer(params, cfg)

    # ---- resume
    st: dict = {"step": 0, "best": {}, "bad_evals": 0, "val_history": [], "log": [], "counters": {},
                "train_time_s": 0.0, "wall_time_s": 0.0, "stopped_early": False, "segments": []}
    ckpt = ray.train.get_checkpoint()
    run_dir = Path(loop_config["run_dir"]) if loop_config.get("run_dir") else None
    local = ckpt is None or Path(ckpt.path).is_dir()  # local or shared storage
    resume_dir = pick_checkpoint(Path(ckpt.path) if ckpt else None, run_dir) if local else None
    if resume_dir is not None:
        st, _ = read_state(resume_dir)
    elif ckpt:
        with ckpt.as_directory() as d:
            st, _ = read_state(Path(d))
    resumed = "trainable" in st
    if resumed:
        encoder.load_state_dict(st.pop("trainable"), strict=False)
        opt.load_state_dict(st.pop("optimizer"))
        sched.load_state_dict(st.pop("scheduler"))
    best_weights = st.pop("best_weights", None)
    start = st["step"]
    st["segments"].append({"start_step": start, "workers": world, "device": device.type})
    counters = BatchCounter(st["counters"])
    if rank == 0:
        _say(f"hybrid train: {'resuming at' if resumed else 'starting at'} step {start}/{cfg.run.steps}; "
              f"{world} worker(s) on {device.type}, bf16={bf16}, frozen word embeddings={freeze}, "
              f"{len(sampler)} steps/epoch, {len(val_batches)} validation batches/worker")

    def save_state(d: Path, step: int) -> None:
        state = dict(st, step=step, counters=counters.state(), trainable=snapshot(params),
                     optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                     best_weights=best_weights, wall_time_s=wall_before + time.perf_counter() - t_start)
        write_state(d, state)

    def report(step: int, metrics: dict, final: bool = False) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if rank == 0:
                save_state(Path(tmp), step)
                if final:
                    write_final(Path(tmp), step)
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=checkpoint,
                             checkpoint_dir_name=f"step-{step:06d}{'-final' if final else ''}")

    def write_final(d: Path, step: int) -> None:
        if best_weights is not None:
            encoder.load_state_dict(best_weights, strict=False)
        encoder.save(d / "model")
        summary = make_summary(
            config=cfg.to_dict(), step=step, batch_size=cfg.data.batch_size, workers=world,
            counters=counters, wall_time_s=wall_before + time.perf_counter() - t_start,
            train_time_s=st["train_time_s"], val_history=st["val_history"], best=st["best"],
            stopped_early=st["stopped_early"], segments=st["segments"],
            settings={"model": cfg.model.model, "device": device.type, "bf16": bf16,
                      "freeze_embeddings": freeze, "excluded_languages": sampler.excluded_languages})
        (d / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        (d / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in st["log"]),
                                           encoding="utf-8")

    wall_before = st["wall_time_s"]
    steps = cfg.run.steps
    bar = tqdm(total=steps, desc="train") if rank == 0 and loop_config.get("progress_bar") else None
    if bar:
        bar.update(start)
    step = start
    done = st["stopped_early"] or step >= steps

    def evaluate(step: int) -> float:
        nonlocal best_weights
        val = validation_loss(encoder, texts, val_batches, cfg, bf16, world)
        st["val_history"].append({"step": step, "loss": round(val, 5)})
        if not st["best"] or val < st["best"]["loss"]:
            st["best"] = {"step": step, "loss": round(val, 5)}
            best_weights = snapshot(params)
            st["bad_evals"] = 0
        else:
            st["bad_evals"] += 1
        st["stopped_early"] = st["bad_evals"] >= cfg.run.patience
        if rank == 0:
            _say(f"step {step}: validation loss {val:.4f} (best {st['best']['loss']:.4f} at step "
                 f"{st['best']['step']})" + ("; stopping early" if st["stopped_early"] else ""))
        return val

    if val_batches and not st["val_history"]:
        evaluate(0)  # the starting model is the first candidate for the best one
    while not done:
        gb = sampler.global_batch(step)
        torch.manual_seed(hash((cfg.run.seed, step, rank)) % 2**31)  # dropout: resumable
        t0 = time.perf_counter()
        loss = batch_loss(encoder, texts, sampler.local(gb), cfg, bf16)
        loss.backward()
        average_gradients(list(params.values()), world)
        torch.nn.utils.clip_grad_norm_(list(params.values()), cfg.optim.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        loss_value = mean_over_workers(loss.item(), world, device)
        dt = time.perf_counter() - t0
        st["train_time_s"] += dt
        step += 1
        counters.add(gb)
        rec = {"step": step, "loss": round(loss_value, 5), "type": gb.type, "language": gb.language,
               "dataset": gb.dataset, "lr": sched.get_last_lr()[0], "pairs_per_s": round(len(gb.pairs) / dt, 2)}
        st["log"].append(rec)
        if rank == 0:
            _say(f"step {step}/{steps} loss {loss_value:.4f} {gb.type}{' ' + gb.language if gb.language else ''} "
                 f"lr {rec['lr']:.2e} {rec['pairs_per_s']} pairs/s")
            if bar:
                bar.set_description(f"train loss {loss_value:.3f}")
                bar.update(1)
        if not math.isfinite(loss_value):
            raise RuntimeError(f"training loss is {loss_value} at step {step}")
        _maybe_fail_once(step, rank, world)
        _maybe_pause(step, rank, world)
        if step % cfg.run.val_every and step < steps:
            continue
        metrics = {"step": step, "train_loss": loss_value}
        if val_batches:
            val = evaluate(step)
            metrics.update(val_loss=val, best_val_loss=st["best"]["loss"])
        done = st["stopped_early"] or step >= steps
        if not done:
            report(step, metrics)
    if bar:
        bar.close()
    report(step, {"step": step, "final": True, "best_val_loss": st["best"].get("loss")}, final=True)


def _say(line: str) -> None:
    """One line to the worker's stdout (Ray forwards it to the driver). Not `print`: Ray
    Train patches print into its logger and, with a wrapped stdout, tees it (twice shown)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _maybe_fail_once(step: int, rank: int, world: int) -> None:
    spec = os.environ.get(FAIL_ONCE_ENV)
    if not spec or rank != world - 1:
        return
    at, _, marker = spec.partition(":")
    if step == int(at) and not Path(marker).exists():
        Path(marker).write_text("failed once\n", encoding="utf-8")
        raise RuntimeError(f"{FAIL_ONCE_ENV}: injected failure after step {step}")


def _maybe_pause(step: int, rank: int, world: int) -> None:
    spec = os.environ.get(PAUSE_ENV)
    if not spec or rank != world - 1:
        return
    at, _, marker = spec.partition(":")
    if step == int(at) and not Path(marker).exists():
        from hybrid.io import write_text

        write_text(marker, f"{os.getpid()}\n")
        time.sleep(600)
