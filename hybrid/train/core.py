"""The training core: `Trainer`, one bi-encoder training run in one process, with no Ray.

Inputs: a `BiEncoder` (hybrid.encoder), a `TrainConfig`, a torch device, a texts object
(`batch(batch, hard, seed) -> (questions, positives, hard negatives)`, e.g.
`hybrid.train.loop.Texts`), a collective (`hybrid.train.collective`: `Local` for one
process, `TorchDist` over torch.distributed) and the validation batches of this process.
It runs on CPU or CUDA in any process: the Ray Train adapter (`hybrid.train.loop`), a test,
or `bench/gpu_check.py`.

A step (`step(global_batch)`): this process's slice (`local`, e.g. the sampler's
`local`), the texts, embeddings (bf16 autocast when on) and InfoNCE against the candidates
of all processes (`hybrid.loss`), backward (plain, or gradient caching when
`data.grad_cache_chunk` is set: `hybrid.train.grad_cache`), gradients averaged over
processes (one flat all-reduce), clipping, fused AdamW, linear warmup/decay. Dropout is
seeded by (seed, step, rank) before every step, so a resumed run draws the same masks.

`validate()` is the validation loss (mean over processes) and keeps the best weights and
early stopping (`run.patience` evaluations without a new best). `fit(batch_at, on_eval)`
runs steps until `run.steps` or early stopping, validating every `run.val_every` steps.
`state_dict()` / `load_state_dict()` hold everything a resumed run needs (the layout of the
`state.pt` checkpoints, hybrid.train.checkpoint). `write_outputs(dir)` writes `model/` (the
best weights), `train_summary.json` and `train_log.jsonl`.

Per-step hooks: `run.callbacks` lists importable "module:function" specs; each is called as
`fn(trainer, record)` after every step on every process (`record`: the step's log line).

Distillation (`optim.distill_weight` > 0, `hybrid.train.distill`): the trainer holds a frozen
teacher (a copy of the starting model, or `optim.distill_teacher`'s model) and, on cross
steps, backpropagates the distillation term of the batch's mono pairs after the loss, before
the gradients are averaged; the record's "distill" is the term (mean over processes), "loss" stays InfoNCE.
"""

from __future__ import annotations

import importlib
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from hybrid.errors import HybridError
from hybrid.loss import group_keys, info_nce_loss
from hybrid.sampling import Batch
from hybrid.train.collective import Local
from hybrid.train.config import TrainConfig
from hybrid.train.summary import BatchCounter, make_summary


def say(line: str) -> None:
    """One line to stdout. Not `print`: Ray Train patches print into its logger and, with a
    wrapped stdout, tees it (twice shown)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


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


def load_callback(spec: str) -> Callable:
    """The function named by "module:function" (HybridError naming `run.callbacks`)."""
    mod, _, name = str(spec).partition(":")
    try:
        fn = getattr(importlib.import_module(mod), name) if mod and name else None
    except Exception as exc:  # ImportError or an error inside the module
        raise HybridError(f"run.callbacks: cannot import {spec!r} ({type(exc).__name__}: {exc})") from None
    if not callable(fn):
        raise HybridError(f"run.callbacks: {spec!r} is not a callable 'module:function'")
    return fn


def batch_loss(encoder, texts, batch: Batch, cfg: TrainConfig, bf16: bool,
               backward: bool = False) -> torch.Tensor:
    """InfoNCE of one process's slice `batch` (texts from `texts.batch`, candidates gathered
    from all processes). With `backward`, its gradients are accumulated into `.grad`
    (plain, or GradCache when `data.grad_cache_chunk` is set) and the loss is returned
    detached; without, the loss is differentiable unless called under no_grad."""
    d, dev = cfg.data, encoder.device
    h = d.hard_negatives
    qs, ps, hs = texts.batch(batch, h, cfg.run.seed)
    b = len(qs)
    keys = group_keys([f"{batch.dataset}/{p.xling_id}" for p in batch.pairs], device=dev)

    def loss_fn(q: torch.Tensor, p_all: torch.Tensor) -> torch.Tensor:
        hard = p_all[b:].reshape(b, h, -1) if h else None
        return info_nce_loss(q, p_all[:b], keys, hard=hard, temperature=cfg.optim.temperature,
                             multi_positive=cfg.optim.multi_positive)

    chunk = d.grad_cache_chunk
    if chunk:
        from hybrid.train.grad_cache import cached_backward, embed_chunked

        if backward:
            return cached_backward(encoder, qs, ps + hs, loss_fn, chunk, bf16)
        return loss_fn(embed_chunked(encoder, qs, "query", chunk, bf16),
                       embed_chunked(encoder, ps + hs, "passage", chunk, bf16))
    with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=bf16):
        q = encoder.embed_texts(qs, "query")  # length-sorted chunks: less padding
        p_all = encoder.embed_texts(ps + hs, "passage")
    loss = loss_fn(q, p_all)
    if backward:
        loss.backward()
        loss = loss.detach()
    return loss


def new_state() -> dict:
    """The counters and history of a run that has not started."""
    return {"step": 0, "best": {}, "bad_evals": 0, "val_history": [], "log": [], "counters": {},
            "train_time_s": 0.0, "wall_time_s": 0.0, "stopped_early": False, "segments": []}


# ------------------------------------------------------------------------ trainer
class Trainer:
    """One process's part of a training run (see the module docstring).

    `local(global_batch) -> this process's slice` (default: the whole batch, one process);
    `hooks`: callables `fn(trainer, record)` run after each step, after the config's
    `run.callbacks`; `log`: where progress lines go (rank 0 only; None: silent).
    `teacher` (used only when `optim.distill_weight` > 0): the teacher as a BiEncoder, or a
    function of no arguments that loads it (the Ray adapter loads it as it loads the student);
    None: `optim.distill_teacher`'s model if set, else a copy of `encoder` as given here, which
    is the starting model (a resumed run's weights arrive later, through `load_state_dict`).
    """

    def __init__(self, encoder, cfg: TrainConfig, device: torch.device | str, texts, *,
                 collective=None, local: Callable[[Batch], Batch] | None = None,
                 val_batches: Sequence[Batch] = (), hooks: Sequence[Callable] = (),
                 log: Callable[[str], None] | None = say, teacher=None):
        self.cfg = cfg
        self.device = torch.device(device)
        self.texts = texts
        self.comm = collective or Local()
        self.local = local or (lambda b: b)
        self.val_batches = list(val_batches)
        self.bf16 = bf16_supported(self.device) if cfg.run.bf16 is None else bool(cfg.run.bf16)
        self.freeze = (self.device.type == "cpu" if cfg.model.freeze_embeddings is None
                       else bool(cfg.model.freeze_embeddings))
        self.distiller = None  # the frozen teacher, built only when distilling
        self.last_distill: float | None = None  # the last step's term (None: no term)
        o = cfg.optim
        if o.distill_weight > 0:
            from hybrid.train.distill import Distiller, frozen_copy

            if teacher is None and o.distill_teacher is not None:
                from hybrid.model.baselines import checked_model_dir
                from hybrid.train.distill import load_teacher

                teacher = load_teacher(checked_model_dir(o.distill_teacher), cfg.model)
            elif teacher is None:
                teacher = frozen_copy(encoder)  # before prepare_encoder or any restored state
            elif not isinstance(teacher, torch.nn.Module):
                teacher = teacher()
            self.distiller = Distiller(teacher, self.device, o.distill_weight, o.distill_loss,
                                       o.distill_temperature or o.temperature, self.bf16,
                                       cfg.data.grad_cache_chunk)
        self.encoder = prepare_encoder(encoder, self.device, self.freeze)
        self.params = trainable(self.encoder)
        self.opt, self.sched = make_optimizer(self.params, cfg)
        self.hooks = [load_callback(s) for s in cfg.run.callbacks] + list(hooks)
        self.log = log if self.comm.rank == 0 else None
        self.st = new_state()
        self.counters = BatchCounter()
        self.best_weights: dict | None = None
        self._t0 = time.perf_counter()
        self._wall_before = 0.0

    # ------------------------------------------------------------------ state
    @property
    def step_count(self) -> int:
        return int(self.st["step"])

    @property
    def done(self) -> bool:
        """True once `run.steps` steps are done or early stopping triggered."""
        return bool(self.st["stopped_early"]) or self.step_count >= self.cfg.run.steps

    def state_dict(self) -> dict:
        """Counters, history, trainable weights, optimizer, scheduler and the best weights
        (CPU tensors and plain values: `torch.load(weights_only=True)` reads it)."""
        return dict(self.st, counters=self.counters.state(), trainable=snapshot(self.params),
                    optimizer=self.opt.state_dict(), scheduler=self.sched.state_dict(),
                    best_weights=self.best_weights,
                    wall_time_s=self._wall_before + time.perf_counter() - self._t0)

    def load_state_dict(self, state: dict) -> None:
        """Continue from `state_dict()` output (e.g. a checkpoint's `state.pt`)."""
        st = dict(state)
        if "trainable" in st:
            self.encoder.load_state_dict(st.pop("trainable"), strict=False)
            self.opt.load_state_dict(st.pop("optimizer"))
            self.sched.load_state_dict(st.pop("scheduler"))
        self.best_weights = st.pop("best_weights", None)
        self.st = {**new_state(), **st}
        self.counters = BatchCounter(self.st["counters"])
        self._wall_before, self._t0 = float(self.st["wall_time_s"]), time.perf_counter()

    # ------------------------------------------------------------------- math
    def batch_loss(self, batch: Batch, backward: bool) -> torch.Tensor:
        """`batch_loss` of this process's slice `batch` with this run's settings."""
        return batch_loss(self.encoder, self.texts, batch, self.cfg, self.bf16, backward)

    def backward(self, batch: Batch) -> float:
        """Gradients of global batch `batch` (this process's slice), averaged over processes,
        in the parameters' `.grad`; dropout seeded by (seed, step, rank). Returns the loss of
        the global batch (mean over processes). On a cross step with distillation the term's
        gradients are added before the averaging; `last_distill` is its value (mean over
        processes; None on other steps)."""
        torch.manual_seed(hash((self.cfg.run.seed, batch.step, self.comm.rank)) % 2**31)
        mine = self.local(batch)
        loss = self.batch_loss(mine, backward=True)
        distill = None
        if self.distiller is not None and batch.type == "cross":  # the global type: every rank
            distill = self.distiller.backward(self.encoder, self.texts, mine, self.cfg.run.seed)
        params = list(self.params.values())
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        self.comm.mean_([p.grad for p in params])
        self.last_distill = None if distill is None else self.comm.mean(distill)
        return self.comm.mean(loss.item())

    def step(self, batch: Batch) -> dict:
        """One optimizer step on global batch `batch`; returns its log record (also kept
        in `train_log.jsonl`) after running the hooks. RuntimeError if the loss is not finite."""
        t0 = time.perf_counter()
        loss = self.backward(batch)
        params = list(self.params.values())
        torch.nn.utils.clip_grad_norm_(params, self.cfg.optim.max_grad_norm)
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0
        self.st["train_time_s"] += dt
        self.st["step"] = step = self.step_count + 1
        self.counters.add(batch)
        rec = {"step": step, "loss": round(loss, 5), "type": batch.type, "language": batch.language,
               "dataset": batch.dataset, "lr": self.sched.get_last_lr()[0],
               "pairs_per_s": round(len(batch.pairs) / dt, 2)}
        if self.last_distill is not None:
            rec["distill"] = round(self.last_distill, 6)
        self.st["log"].append(rec)
        if self.log:
            self.log(f"step {step}/{self.cfg.run.steps} loss {loss:.4f} {batch.type}"
                     f"{' ' + batch.language if batch.language else ''} lr {rec['lr']:.2e} "
                     f"{'' if self.last_distill is None else f'distill {self.last_distill:.4f} '}"
                     f"{rec['pairs_per_s']} pairs/s")
        if not math.isfinite(loss):
            raise RuntimeError(f"training loss is {loss} at step {step}")
        if self.last_distill is not None and not math.isfinite(self.last_distill):
            raise RuntimeError(f"distillation term is {self.last_distill} at step {step}")
        for hook in self.hooks:
            hook(self, rec)
        return rec

    @torch.no_grad()
    def validation_loss(self) -> float:
        """Mean loss of the validation batches, mean over processes (no update)."""
        self.encoder.eval()
        try:
            losses = [self.batch_loss(b, backward=False).item() for b in self.val_batches]
        finally:
            self.encoder.train()
        return self.comm.mean(sum(losses) / len(losses))

    def validate(self) -> float:
        """The validation loss at the current step, recorded; a new best keeps its weights,
        else `run.patience` such evaluations in a row stop the run (`done`)."""
        step = self.step_count
        val = self.validation_loss()
        st = self.st
        st["val_history"].append({"step": step, "loss": round(val, 5)})
        if not st["best"] or val < st["best"]["loss"]:
            st["best"] = {"step": step, "loss": round(val, 5)}
            self.best_weights = snapshot(self.params)
            st["bad_evals"] = 0
        else:
            st["bad_evals"] += 1
        st["stopped_early"] = st["bad_evals"] >= self.cfg.run.patience
        if self.log:
            self.log(f"step {step}: validation loss {val:.4f} (best {st['best']['loss']:.4f} at step "
                     f"{st['best']['step']})" + ("; stopping early" if st["stopped_early"] else ""))
        return val

    # -------------------------------------------------------------------- run
    def fit(self, batch_at: Callable[[int], Batch],
            on_eval: Callable[[dict], None] | None = None) -> None:
        """Train from the current step until `done`: `batch_at(step)` is the global batch of a
        step (e.g. the sampler's `global_batch`). With validation batches, the starting model
        is evaluated first (unless already) and then every `run.val_every` steps and at the
        end; `on_eval(metrics)` is called after each of those evaluations (without validation
        batches: at the same steps) unless the run is done (the caller checkpoints there)."""
        if self.val_batches and not self.st["val_history"]:
            self.validate()  # the starting model is the first candidate for the best one
        while not self.done:
            rec = self.step(batch_at(self.step_count))
            step = rec["step"]
            if step % self.cfg.run.val_every and step < self.cfg.run.steps:
                continue
            metrics = {"step": step, "train_loss": rec["loss"]}
            if self.val_batches:
                val = self.validate()
                metrics.update(val_loss=val, best_val_loss=self.st["best"]["loss"])
            if not self.done and on_eval:
                on_eval(metrics)

    def summary(self, settings: dict | None = None) -> dict:
        """The `train_summary.json` document of the run so far."""
        st = self.st
        return make_summary(
            config=self.cfg.to_dict(), step=self.step_count, batch_size=self.cfg.data.batch_size,
            workers=self.comm.world, counters=self.counters,
            wall_time_s=self._wall_before + time.perf_counter() - self._t0,
            train_time_s=st["train_time_s"], val_history=st["val_history"], best=st["best"],
            stopped_early=st["stopped_early"], segments=st["segments"],
            settings={"model": self.cfg.model.model, "device": self.device.type, "bf16": self.bf16,
                      "freeze_embeddings": self.freeze, "grad_cache_chunk": self.cfg.data.grad_cache_chunk,
                      **(settings or {})})

    def write_outputs(self, d: Path, settings: dict | None = None) -> None:
        """`d/model` (the best weights, else the current ones), `d/train_summary.json` and
        `d/train_log.jsonl` (`d` is a fresh directory: the caller makes it atomic)."""
        if self.best_weights is not None:
            self.encoder.load_state_dict(self.best_weights, strict=False)
        self.encoder.save(Path(d) / "model")
        (Path(d) / "train_summary.json").write_text(json.dumps(self.summary(settings), indent=2) + "\n",
                                                    encoding="utf-8")
        (Path(d) / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in self.st["log"]),
                                                 encoding="utf-8")
