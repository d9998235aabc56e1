"""Benchmark: training throughput (pairs/s) of one worker for fp32 vs bf16 autocast and
frozen vs trained word embeddings.

    python bench/train_throughput.py [--pairs DIR] [--model me5-small] [--steps 4]
                                     [--batch-size 32] [--out bench/results/train_throughput.json]

Each setting loads a fresh model and runs the trainer's own step (`hybrid.train.loop`:
`batch_loss`, backward, clipping, AdamW) on the same hybrid batches of the XQuAD-R train
split: one warm-up step, then `--steps` timed steps. Ray is not involved (its cost is per run,
not per step; `train_summary.json` reports the pairs/s of full runs). Without `--pairs` the
table is built from the offline XQuAD-R data first.
"""

from __future__ import annotations

import argparse
import os
import platform
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
    from hybrid.train.loop import Texts, batch_loss, make_optimizer, make_samplers, trainable

    sampler, _ = make_samplers(table, cfg)
    texts = Texts(table)
    enc = BiEncoder.from_pretrained(model_path)
    if freeze:
        enc.freeze_word_embeddings()
    enc.train()
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
    b = cfg.data.batch_size
    return {"bf16": bf16, "freeze_embeddings": freeze, "steps": steps,
            "s_per_step": round(sum(times) / len(times), 3),
            "pairs_per_s": round(b * len(times) / sum(times), 2),
            "trainable_params": sum(p.numel() for p in params.values())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs")
    ap.add_argument("--model", default="me5-small")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out", default=str(ROOT / "results" / "train_throughput.json"))
    args = ap.parse_args()

    from hybrid.data.pairs import load_pairs
    from hybrid.model import resolve_model
    from hybrid.train import load_profile

    table = load_pairs(_pairs_dir(args.pairs))
    model_path = resolve_model(args.model)
    cfg = load_profile("quick").override(**{"data.batch_size": args.batch_size, "data.pairs": "-",
                                            "run.steps": args.steps + 1})
    rows = []
    for name, bf16, freeze in SETTINGS:
        r = measure(table, model_path, cfg, bf16, freeze, args.steps)
        print(f"{name:5s} frozen={freeze!s:5s} {r['pairs_per_s']:7.2f} pairs/s "
              f"({r['s_per_step']} s/step)", flush=True)
        rows.append({"setting": f"{name}{'+frozen' if freeze else ''}", **r})
    base = rows[0]["pairs_per_s"]
    for r in rows:
        r["speedup_vs_fp32"] = round(r["pairs_per_s"] / base, 2)
    write_json(args.out, {
        "bench": "train_throughput", "model": args.model, "batch_size": args.batch_size,
        "strategy": cfg.data.strategy, "machine": {"platform": platform.platform(),
                                                   "cpus": os.cpu_count(),
                                                   "torch_threads": torch.get_num_threads(),
                                                   "torch": torch.__version__},
        "results": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
