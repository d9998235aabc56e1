"""Benchmark: training pairs/s of this tool's trainer vs sentence-transformers'
`SentenceTransformerTrainer` with `MultipleNegativesRankingLoss`, on the same batches.

    python -m bench.train_vs_st [--pairs DIR] [--model me5-small] [--steps 6] [--warmup 2]
                                [--rounds 2] [--settings frozen,unfrozen] [--ray]

Both sides: mE5-small, batch 32, bf16 autocast (ST: `bf16=True, use_cpu=True`), AdamW lr 3e-5,
weight decay 0.01, grad-norm clip 1.0, temperature 0.05 (= MNRL scale 20), prefixes
`query: `/`passage: `, the same frozen/trained word embeddings. The batches are the trainer's
own hybrid batches of the XQuAD-R train split (`quick` profile, no validation ids held out):
ours runs them through `hybrid.train.core.batch_loss`; ST gets the same (question, positive)
rows in the same order (a sequential batch sampler), so every step sees the same texts.
Max lengths: ours truncates questions at 64 and passages at 128 tokens; ST has one
`max_seq_length` (128), which is equivalent here because no training question is longer than
64 tokens (checked and recorded: `questions_over_64_tokens`).

A step's time is wall time from the end of one optimizer step to the end of the next, so it
includes tokenization and data loading on both sides (ST: between `on_step_end` callbacks).
`--warmup` steps are not timed. Each (tool, setting) runs in its own subprocess (peak RSS is
that process's `ru_maxrss`), interleaved ours, ST, ours, ST, ...; each run's median step
time, and of the rounds the best (the machine is shared: other jobs only ever slow a round
down, by up to 3x here), as in `bench.encode_vs_st`.
For `--padded-setting` ours also runs as before its length-sorted chunks
(`BiEncoder.embed_texts` with one chunk: the batch padded to its longest text), `ours_padded`.

`--ray` also times full `hybrid.train.train` runs (Ray Train, 1 and 2 workers, same steps):
pairs/s of the steps as the workers log them, and the run's wall time, so Ray's start-up
cost is reported apart from the per-step cost.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.common import RESULTS, machine, pairs_dir, run_worker, write_worker_result

MODULE = "bench.train_vs_st"
SETTINGS = {"frozen": True, "unfrozen": False}


def _cfg(pairs: str, batch_size: int, steps: int, workers: int = 1):
    from hybrid.train import load_profile

    return load_profile("quick").override(**{
        "data.pairs": pairs, "data.batch_size": batch_size, "data.val_ids": 0,
        "run.steps": steps, "run.val_every": steps, "run.workers": workers, "run.bf16": True})


def _batches(pairs: str, batch_size: int, n: int):
    import pandas as pd  # noqa: F401  (load_pairs returns a DataFrame)

    from hybrid.data.pairs import load_pairs
    from hybrid.train.loop import Texts, make_samplers

    table = load_pairs(pairs)
    cfg = _cfg(pairs, batch_size, n)
    sampler, _ = make_samplers(table, cfg)
    texts = Texts(table)
    return cfg, table, texts, [sampler.global_batch(s) for s in range(n)]


# ------------------------------------------------------------------- workers
def worker_ours(spec: dict) -> dict:
    import torch

    from hybrid.encoder import BiEncoder
    from hybrid.train.core import batch_loss, make_optimizer, prepare_encoder, trainable

    if spec["tool"] == "ours_padded":  # before the fix: one batch padded to its longest text
        import hybrid.encoder

        hybrid.encoder.TRAIN_CHUNK_CPU = 1 << 30
    n = spec["warmup"] + spec["steps"]
    cfg, _, texts, batches = _batches(spec["pairs"], spec["batch_size"], n)
    # as a Ray worker on CPU: frozen embeddings if asked, training mode, fast dropout masks
    enc = prepare_encoder(BiEncoder.from_pretrained(spec["model_path"]), torch.device("cpu"), spec["freeze"])
    params = trainable(enc)
    opt, sched = make_optimizer(params, cfg)
    ends, losses = [time.perf_counter()], []
    for step, gb in enumerate(batches):
        torch.manual_seed(step)
        loss = batch_loss(enc, texts, gb, cfg, True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(params.values()), cfg.optim.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(round(loss.item(), 4))
        ends.append(time.perf_counter())
    times = [b - a for a, b in zip(ends, ends[1:], strict=False)][spec["warmup"]:]
    return {"step_times_s": [round(t, 3) for t in times], "losses": losses,
            "trainable_params": sum(p.numel() for p in params.values())}


def worker_st(spec: dict) -> dict:
    import torch
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
        losses,
    )
    from torch.utils.data import BatchSampler, SequentialSampler
    from transformers import TrainerCallback

    n = spec["warmup"] + spec["steps"]
    cfg, _, texts, batches = _batches(spec["pairs"], spec["batch_size"], n)
    qs, ps = [], []
    for gb in batches:
        q, p, _ = texts.batch(gb, 0, cfg.run.seed)
        qs += q
        ps += p
    model = SentenceTransformer(spec["model_path"], device="cpu")
    model.max_seq_length = 128
    word = model[0].auto_model.get_input_embeddings().weight
    if spec["freeze"]:
        word.requires_grad_(False)

    class Timer(TrainerCallback):
        def __init__(self):
            self.ends = []

        def on_train_begin(self, args, state, control, **kw):
            self.ends.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kw):
            self.ends.append(time.perf_counter())

    def sequential(dataset, batch_size, drop_last, **_):
        return BatchSampler(SequentialSampler(range(len(dataset))), batch_size, drop_last)

    timer = Timer()
    with tempfile.TemporaryDirectory() as tmp:
        args = SentenceTransformerTrainingArguments(
            output_dir=tmp, per_device_train_batch_size=spec["batch_size"], max_steps=n,
            learning_rate=cfg.optim.lr, weight_decay=cfg.optim.weight_decay,
            warmup_steps=cfg.optim.warmup_steps, max_grad_norm=cfg.optim.max_grad_norm,
            bf16=True, use_cpu=True, seed=0, report_to="none", save_strategy="no",
            logging_steps=1, disable_tqdm=True, dataloader_drop_last=True,
            batch_sampler=sequential,
            prompts={"anchor": cfg.model.query_prefix, "positive": cfg.model.passage_prefix})
        loss = losses.MultipleNegativesRankingLoss(model, scale=1 / cfg.optim.temperature)
        trainer = SentenceTransformerTrainer(model=model, args=args, loss=loss, callbacks=[timer],
                                             train_dataset=Dataset.from_dict({"anchor": qs, "positive": ps}))
        trainer.train()
    logged = [round(r["loss"], 4) for r in trainer.state.log_history if "loss" in r]
    times = [b - a for a, b in zip(timer.ends, timer.ends[1:], strict=False)][spec["warmup"]:]
    trainable_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"step_times_s": [round(t, 3) for t in times], "losses": logged,
            "trainable_params": trainable_params, "optimizer": args.optim,
            "torch_threads": torch.get_num_threads()}


def worker(spec_path: str, out_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    result = worker_st(spec) if spec["tool"] == "st" else worker_ours(spec)
    write_worker_result(out_path, result)


# --------------------------------------------------------------------- ray runs
def ray_run(pairs: str, batch_size: int, steps: int, workers: int) -> dict:
    from hybrid.train import train

    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        cfg = _cfg(pairs, batch_size, steps, workers).override(
            **{"model.model": "me5-small", "out": str(Path(tmp) / "out")})
        t0 = time.perf_counter()
        out = train(cfg)
        wall = time.perf_counter() - t0
        summary = json.loads((Path(out) / "train_summary.json").read_text(encoding="utf-8"))
        log = [json.loads(x) for x in (Path(out) / "train_log.jsonl").read_text().splitlines()]
    rates = [r["pairs_per_s"] for r in log]
    timed = rates[1:] if len(rates) > 1 else rates  # step 1 warms up
    return {"workers": workers, "steps": len(log), "driver_wall_s": round(wall, 1),
            "worker_wall_s": summary["wall_time_s"], "train_time_s": summary["train_time_s"],
            "pairs_per_s_all_steps": summary["pairs_per_s"],
            "median_pairs_per_s_after_first": round(statistics.median(timed), 2),
            "overhead_s": round(wall - summary["train_time_s"], 1),
            "step_pairs_per_s": rates}


def questions_over(table, model_path: str, limit: int) -> int:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path)
    ids = tok(["query: " + q for q in table["question"]], truncation=False)["input_ids"]
    return sum(len(x) > limit for x in ids)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", nargs=2, metavar=("SPEC", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--pairs")
    ap.add_argument("--model", default="me5-small")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=6, help="timed steps per run")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--settings", default="frozen,unfrozen")
    ap.add_argument("--padded-setting", default="frozen",
                    help="also time ours before the length-sorted chunks (one padded batch) here")
    ap.add_argument("--ray", action="store_true", help="also time full Ray runs, 1 and 2 workers")
    ap.add_argument("--out", default=str(RESULTS / "train_vs_st.json"))
    args = ap.parse_args(argv)
    if args.worker:
        worker(*args.worker)
        return 0

    from hybrid.data.pairs import load_pairs
    from hybrid.io import write_json
    from hybrid.model import resolve_model

    pairs = str(pairs_dir(args.pairs))
    model_path = str(resolve_model(args.model))
    over = questions_over(load_pairs(pairs), model_path, 64)
    mach = machine()
    runs: dict[tuple[str, str], list[dict]] = {}
    for rnd in range(args.rounds):
        for setting in args.settings.split(","):
            tools = ("ours", "st") + (("ours_padded",) if setting == args.padded_setting else ())
            for tool in tools:
                spec = {"tool": tool, "freeze": SETTINGS[setting], "pairs": pairs,
                        "model_path": model_path, "batch_size": args.batch_size,
                        "steps": args.steps, "warmup": args.warmup}
                r = run_worker(MODULE, spec)
                runs.setdefault((setting, tool), []).append(r)
                med = statistics.median(r["step_times_s"])
                print(f"round {rnd + 1}: {setting:8s} {tool:4s} {args.batch_size / med:6.2f} pairs/s "
                      f"(median {med:.2f} s/step), peak RSS {r['peak_rss_mib']:.0f} MiB", flush=True)
    rows = []
    for setting in args.settings.split(","):
        row = {"setting": f"bf16+{setting}"}
        for tool in ("ours", "st", "ours_padded"):
            if (setting, tool) not in runs:
                continue
            rs = runs[(setting, tool)]
            per_round = [statistics.median(r["step_times_s"]) for r in rs]
            med = min(per_round)  # best round: other jobs only ever slow a round down
            row[tool] = {"pairs_per_s": round(args.batch_size / med, 2), "median_s_per_step": round(med, 3),
                         "round_medians_s": [round(t, 3) for t in per_round],
                         "step_times_s": [r["step_times_s"] for r in rs],
                         "peak_rss_mib": max(r["peak_rss_mib"] for r in rs),
                         "trainable_params": rs[0]["trainable_params"],
                         "first_step_loss": rs[0]["losses"][0] if rs[0]["losses"] else None}
            if tool == "st":
                row[tool]["optimizer"] = rs[0].get("optimizer")
        row["ratio"] = round(row["ours"]["pairs_per_s"] / row["st"]["pairs_per_s"], 2)
        if "ours_padded" in row:
            row["ours_padded"]["ratio_vs_st"] = round(row["ours_padded"]["pairs_per_s"] / row["st"]["pairs_per_s"], 2)
            row["chunking_speedup"] = round(row["ours"]["pairs_per_s"] / row["ours_padded"]["pairs_per_s"], 2)
        rows.append(row)
        print(f"{row['setting']}: ours {row['ours']['pairs_per_s']} vs ST {row['st']['pairs_per_s']} "
              f"pairs/s = {row['ratio']}x", flush=True)
    result = {"bench": "train_vs_st", "model": args.model, "batch_size": args.batch_size,
              "max_len": {"query": 64, "passage": 128, "st_max_seq_length": 128,
                          "questions_over_64_tokens": over},
              "timed_steps_per_run": args.steps, "warmup_steps": args.warmup, "rounds": args.rounds,
              "machine": mach, "results": rows,
              "command": " ".join(["python -m bench.train_vs_st"] + sys.argv[1:])}
    if args.ray:
        n = args.warmup + args.steps
        result["ray"] = [ray_run(pairs, args.batch_size, n, w) for w in (1, 2)]
        for r in result["ray"]:
            print(f"ray {r['workers']} worker(s): {r['median_pairs_per_s_after_first']} pairs/s per step, "
                  f"run {r['driver_wall_s']} s (overhead {r['overhead_s']} s)", flush=True)
    result["machine"]["load_avg_1min_after"] = machine()["load_avg_1min"]
    write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
