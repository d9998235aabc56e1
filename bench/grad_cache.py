"""Benchmark: gradient caching (`data.grad_cache_chunk`) vs the plain step, me5-small on CPU.

    python -m bench.grad_cache [--pairs DIR] [--chunk 32] [--out bench/results/grad_cache.json]
        [--settings 32:plain,32:cached,512:cached,512:plain,128:plain,128:cached]
        [--steps 32:2,128:1,512:1] [--repeat 32:plain=3,512:cached=3]

Each setting (global batch size, plain path or gradient caching with chunks of `--chunk`
texts) runs in a fresh subprocess (its peak RSS is its own), in the order given; the
results file is rewritten after each, so an interrupted run keeps what it measured: me5-small
(`resolve_model("me5-small")`), fp32 (no autocast), frozen word embeddings, one worker,
the trainer's own step (`hybrid.train.core.Trainer.step`: loss, backward, clipping, AdamW)
on the hybrid batches of the XQuAD-R train split (600 ids per language, none held out:
batch 512 needs 512 ids per language for mono batches; no hard negatives). One warm-up step on the
first 32 pairs of the first batch, then `--steps` timed steps of the full batch; pairs/s is
the batch size over the median step time. Peak RSS is
the process's maximum (model and table included); `rss_after_load_mib` is the RSS before
the first step.
The CPU model and flags (lscpu), torch threads and the 1-minute load average before and
after each setting are recorded: the machine is shared, so absolute speeds vary with load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import RESULTS, machine, pairs_dir, run_worker, write_worker_result


def _rss_mib() -> float:
    with open("/proc/self/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def worker(spec: dict) -> dict:
    import torch

    from hybrid.encoder import BiEncoder
    from hybrid.model import resolve_model
    from hybrid.train import load_profile
    from hybrid.train.core import Trainer
    from hybrid.train.data import Texts, load_table, make_samplers

    cfg = load_profile("quick").override(**{
        "data.batch_size": spec["batch_size"], "data.grad_cache_chunk": spec["chunk"],
        "data.hard_negatives": 0, "data.val_ids": 0, "run.bf16": False, "model.freeze_embeddings": True,
        "run.steps": 1000, "optim.warmup_steps": 0, "data.pairs": spec["pairs"]})
    table = load_table(spec["pairs"])
    sampler, _ = make_samplers(table, cfg)
    tr = Trainer(BiEncoder.from_pretrained(resolve_model("me5-small")), cfg, "cpu", Texts(table), log=None)
    rss_loaded = _rss_mib()
    times = []
    for step in range(spec["warmup"] + spec["steps"]):
        batch = sampler.global_batch(step)
        if step < spec["warmup"]:  # warm-up (kernels, allocator) on 32 pairs of the batch
            batch = type(batch)(batch.step, batch.type, batch.dataset, batch.pairs[:32], batch.language)
        t0 = time.perf_counter()
        rec = tr.step(batch)
        if step >= spec["warmup"]:
            times.append(time.perf_counter() - t0)
        print(f"  batch {spec['batch_size']} chunk {spec['chunk']}: step {step} ({len(batch.pairs)} pairs) "
              f"{time.perf_counter() - t0:.1f} s loss {rec['loss']}", flush=True)
    med = statistics.median(times)
    return {"step_times_s": [round(t, 2) for t in times], "median_s_per_step": round(med, 2),
            "pairs_per_s": round(spec["batch_size"] / med, 2), "rss_after_load_mib": rss_loaded,
            "torch_threads": torch.get_num_threads(), "fp32": True, "freeze_embeddings": True}


def cpu_facts() -> dict:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    info = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    flags = info.get("Flags", "").split()
    return {"cpu_model": info.get("Model name", "?").strip(),
            "cpu_flags": sorted(f for f in flags if f.startswith(("avx", "amx", "fma"))),
            "cores": os.cpu_count()}


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        spec = json.loads(Path(sys.argv[2]).read_text(encoding="utf-8"))
        write_worker_result(sys.argv[3], worker(spec))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs")
    ap.add_argument("--settings", default="32:plain,32:cached,512:cached,512:plain,128:plain,128:cached",
                    help="batch:mode in the order run (results are written after each)")
    ap.add_argument("--chunk", type=int, default=32)
    ap.add_argument("--steps", default="32:2,128:1,512:1", help="timed steps per batch size")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeat", default="", help="batch:mode=N,...: run these settings N times, "
                    "interleaved with the others (pairs/s: median of the runs; peak RSS: max)")
    ap.add_argument("--out", default=str(RESULTS / "grad_cache.json"))
    ap.add_argument("--merge", nargs="+", metavar="JSON",
                    help="measure nothing: write the results of these files (run side by side) to --out")
    args = ap.parse_args()
    if args.merge:
        parts = [json.loads(Path(p).read_text(encoding="utf-8")) for p in args.merge]
        args.chunk = parts[0]["chunk"]
        args.steps = " / ".join(dict.fromkeys(p["steps_timed"] for p in parts))
        write(args, [r for part in parts for r in part["results"]], parts[0]["machine"])
        return

    pairs = str(pairs_dir(args.pairs))
    steps = {int(k): int(v) for k, v in (x.split(":") for x in args.steps.split(","))}
    repeat = {k: int(v) for k, v in (x.split("=") for x in args.repeat.split(",") if x)}
    settings = args.settings.split(",")
    order = [st for r in range(max([1, *repeat.values()])) for st in settings if r < repeat.get(st, 1)]
    runs: dict[str, list[dict]] = {}
    for setting in order:
        b, mode = int(setting.split(":")[0]), setting.split(":")[1]
        chunk = args.chunk if mode == "cached" else None
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        r = run_worker("bench.grad_cache", {"batch_size": b, "chunk": chunk, "pairs": pairs,
                                            "steps": steps.get(b, 1), "warmup": args.warmup})
        r.update(batch_size=b, mode=mode, chunk=chunk, warmup_steps=args.warmup, wall_s=round(time.perf_counter() - t0, 1),
                 load_avg_1min_before=round(load, 2), load_avg_1min_after=round(os.getloadavg()[0], 2))
        runs.setdefault(setting, []).append(r)
        print(f"batch {b:4d} {mode:6s}: {r['pairs_per_s']:6.2f} pairs/s, peak RSS {r['peak_rss_mib']:7.1f} MiB",
              flush=True)
        write(args, [_combined(rs) for rs in runs.values()])


def _combined(rs: list[dict]) -> dict:
    """One row for repeated runs of a setting: median pairs/s and s/step, max peak RSS, the
    runs' own figures kept under `runs`."""
    if len(rs) == 1:
        return rs[0]
    row = dict(rs[0])
    row.update(pairs_per_s=round(statistics.median(r["pairs_per_s"] for r in rs), 2),
               median_s_per_step=round(statistics.median(r["median_s_per_step"] for r in rs), 2),
               peak_rss_mib=max(r["peak_rss_mib"] for r in rs),
               step_times_s=[t for r in rs for t in r["step_times_s"]],
               runs=[{k: r[k] for k in ("pairs_per_s", "peak_rss_mib", "load_avg_1min_before")} for r in rs])
    return row


def write(args, rows: list[dict], mach: dict | None = None) -> None:
    """The results so far, with the target ratios where their settings are measured."""
    from hybrid.io import write_json

    def get(b, mode):
        return next((r for r in rows if r["batch_size"] == b and r["mode"] == mode), None)

    targets: dict = {}
    big = max(r["batch_size"] for r in rows if r["mode"] == "cached") if any(r["mode"] == "cached" for r in rows) else 0
    c_big, p32, c32 = get(big, "cached"), get(32, "plain"), get(32, "cached")
    if c_big and p32:
        targets = {
            f"cached_{big}_peak_rss_over_plain_32": round(c_big["peak_rss_mib"] / p32["peak_rss_mib"], 3),
            f"cached_{big}_pairs_per_s_over_plain_32": round(c_big["pairs_per_s"] / p32["pairs_per_s"], 3),
            "target_rss_ratio_max": 1.2, "target_speed_ratio_min": 0.7}
        if c32:
            targets[f"cached_{big}_peak_rss_over_cached_32"] = round(c_big["peak_rss_mib"] / c32["peak_rss_mib"], 3)
    write_json(args.out, {"bench": "grad_cache", "model": "me5-small", "strategy": "hybrid",
                          "chunk": args.chunk, "steps_timed": args.steps, "warmup_steps_of_32_pairs": args.warmup,
                          "machine": mach or {**machine(), **cpu_facts()}, "results": rows, "targets": targets})
    print(json.dumps(targets), f"-> {args.out}", flush=True)


if __name__ == "__main__":
    main()
