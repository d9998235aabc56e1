"""Benchmark: training throughput (pairs/s) of one worker for fp32 vs bf16 autocast and
frozen vs trained word embeddings.

    python bench/train_throughput.py [--pairs DIR] [--model me5-small] [--steps 4]
                                     [--batch-size 32] [--out bench/results/train_throughput.json]

Each setting loads a fresh model and runs the trainer's own step (`hybrid.train.core`:
`batch_loss`, backward, clipping, AdamW) on the same hybrid batches of the XQuAD-R train
split: one warm-up step, then `--steps` timed steps; `--rounds` repeats the four settings in
turn, so load from other processes on a shared machine spreads over all settings, and each
setting's figure is its best round's median step time (as in `bench/train_vs_st.py`). The
1-minute load average before and after is recorded. Ray is not involved (its cost is per
run, not per step; `train_summary.json` reports the pairs/s of full runs). Without `--pairs`
the table is built from the offline XQuAD-R data first.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from hybrid.io import write_json
from hybrid.paths import default_data_dir

ROOT = Path(__file__).resolve().parent
SETTINGS = [("fp32", False, False), ("fp32", False, True), ("bf16", True, False), ("bf16", True, True)]


def _pairs_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    from hybrid.cli import main

    out = Path(tempfile.mkdtemp(prefix="bench-pairs-"))
    src = default_data_dir() / "lareqa" / "xquad-r"
    if main(["data", "pairs", "--source", f"xquad-r:{src}", "--out", str(out)]) != 0:
        sys.exit("could not build the pairs table")
    return out


def measure(table, model_path: Path, cfg, bf16: bool, freeze: bool, steps: int) -> dict:
    from hybrid.encoder import BiEncoder
    from hybrid.train.core import batch_loss, make_optimizer, prepare_encoder, trainable
    from hybrid.train.loop import Texts, make_samplers

    sampler, _ = make_samplers(table, cfg)
    texts = Texts(table)
    enc = prepare_encoder(BiEncoder.from_pretrained(model_path), torch.device("cpu"), freeze)
    params = trainable(enc)
    opt, sched = make_optimizer(params, cfg)
    times = []
    for step in range(steps + 1):
        t0 = time.perf_counter()
        loss = batch_loss(enc, texts, sampler.global_batch(step), cfg, bf16)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(params.values()), cfg.optim.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step:  # step 0 warms up
            times.append(time.perf_counter() - t0)
    return {"step_times_s": [round(t, 3) for t in times],
            "trainable_params": sum(p.numel() for p in params.values())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs")
    ap.add_argument("--model", default="me5-small")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "results" / "train_throughput.json"))
    args = ap.parse_args()

    from hybrid.data.pairs import load_pairs
    from hybrid.model import resolve_model
    from hybrid.train import load_profile

    table = load_pairs(_pairs_dir(args.pairs))
    model_path = resolve_model(args.model)
    cfg = load_profile("quick").override(**{"data.batch_size": args.batch_size, "data.pairs": "-",
                                            "run.steps": args.steps + 1})
    load_before = os.getloadavg()[0]
    times: dict[tuple, list[list[float]]] = {k: [] for k in SETTINGS}  # per round
    params = {}
    for rnd in range(args.rounds):
        for key in SETTINGS:
            name, bf16, freeze = key
            r = measure(table, model_path, cfg, bf16, freeze, args.steps)
            times[key].append(r["step_times_s"])
            params[key] = r["trainable_params"]
            print(f"round {rnd + 1}: {name:5s} frozen={freeze!s:5s} "
                  f"{args.batch_size / statistics.median(r['step_times_s']):6.2f} pairs/s", flush=True)
    rows = []
    for key in SETTINGS:
        name, bf16, freeze = key
        medians = [statistics.median(t) for t in times[key]]
        med = min(medians)  # the best round: another job's burst slows a round, never speeds one
        rows.append({"setting": f"{name}{'+frozen' if freeze else ''}", "bf16": bf16,
                     "freeze_embeddings": freeze, "steps_timed": sum(map(len, times[key])),
                     "median_s_per_step": round(med, 3),
                     "round_medians_s": [round(m, 3) for m in medians],
                     "pairs_per_s": round(args.batch_size / med, 2),
                     "step_times_s": times[key], "trainable_params": params[key]})
    base = rows[0]["pairs_per_s"]
    for r in rows:
        r["speedup_vs_fp32"] = round(r["pairs_per_s"] / base, 2)
    write_json(args.out, {
        "bench": "train_throughput", "model": args.model, "batch_size": args.batch_size,
        "strategy": cfg.data.strategy, "machine": {"platform": platform.platform(),
                                                   "cpus": os.cpu_count(),
                                                   "torch_threads": torch.get_num_threads(),
                                                   "torch": torch.__version__,
                                                   "load_avg_1min_before": round(load_before, 2),
                                                   "load_avg_1min_after": round(os.getloadavg()[0], 2)},
        "results": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
