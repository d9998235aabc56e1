"""Benchmark: gradient caching (`data.grad_cache_chunk`) vs the plain step, me5-small on CPU.

    python -m bench.grad_cache [--pairs DIR] [--chunk 32] [--out bench/results/grad_cache.json]
        [--settings 32:plain,32:cached,512:cached,512:plain,128:plain,128:cached]
        [--source-steps 2] [--source-batch 512] [--repeat 32:plain=3,512:cached=3]

Each setting (global batch size, plain path or gradient caching with chunks of `--chunk`
texts) runs in a fresh subprocess (its peak RSS is its own), in the order given; the
results file is rewritten after each, so an interrupted run keeps what it measured: me5-small
(`resolve_model("me5-small")`), fp32 (no autocast), frozen word embeddings, one worker,
the trainer's own step (`hybrid.train.core.Trainer.step`: loss, backward, clipping, AdamW)
on hybrid batches of the XQuAD-R train split (600 ids per language, none held out:
batch 512 needs 512 ids per language for mono batches; no hard negatives).

Every setting trains on the same pairs: the first `--source-steps` global batches of the
largest batch size in the run (`--source-batch`, default: that size), each cut into
consecutive batches of the setting's size (the pieces of a mono batch are mono batches in
its language, those of a cross batch cross batches: the sampler's invariants hold). So a
batch of 32 and one of 512 see the same texts in the same languages; with batches drawn per
size instead, a few timed steps compare different languages (token counts per pair differ
by 2x between languages) more than the two methods. One warm-up step on the first 32 pairs
of the first batch, then every piece is timed; pairs/s is the pairs over the summed step
times. Peak RSS is the process's maximum (model and table included); `rss_after_load_mib`
is the RSS before the first step.
The CPU model and flags (lscpu), torch threads and the 1-minute load average before and
after each setting are recorded: the machine is shared, so absolute speeds vary with load.

`--interleaved R` then measures the speed target in one process, where the host's drift
(1.5x within minutes on the shared machine) cannot fall on one method only: a plain trainer
(batches of 32) and a gradient-caching trainer (the whole source batch, chunks of `--chunk`)
on two copies of the model train on each source batch in turn, R rounds, the order
alternating (plain first, then cached first); pairs/s of each is its pairs over its summed
step times, and the speed ratio in `targets` is this one (the separate processes' ratio is
kept as `..._separate_runs`). Peak RSS always comes from the separate processes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from bench.common import (
    RESULTS,
    cpu_facts,
    machine,
    pairs_dir,
    rss_mib,
    run_worker,
    write_worker_result,
)


def _setup(spec: dict, chunks: tuple):
    """(sampler of `source_batch`-pair global batches, [a Trainer per gradient-cache chunk in
    `chunks` (None: plain), each on its own copy of me5-small])."""
    from hybrid.encoder import BiEncoder
    from hybrid.model import resolve_model
    from hybrid.train import load_profile
    from hybrid.train.core import Trainer
    from hybrid.train.data import Texts, load_table, make_samplers

    base = load_profile("quick").override(**{
        "data.batch_size": spec["source_batch"], "data.hard_negatives": 0, "data.val_ids": 0,
        "run.bf16": False, "model.freeze_embeddings": True, "run.steps": 1000,
        "optim.warmup_steps": 0, "data.pairs": spec["pairs"]})
    table = load_table(spec["pairs"])
    texts = Texts(table)
    sampler, _ = make_samplers(table, base)
    return sampler, [Trainer(BiEncoder.from_pretrained(resolve_model("me5-small")),
                             base.override(**{"data.grad_cache_chunk": chunk}), "cpu", texts, log=None)
                     for chunk in chunks]


def _warm_up(trainers, sampler) -> None:
    """One step of each trainer on the first 32 pairs of the first batch (kernels, allocator)."""
    first = _pieces(sampler.global_batch(0), 32)[0]
    for tr in trainers:
        tr.step(first)


def _pieces(big, b: int) -> list:
    """`big` cut into consecutive batches of `b` pairs (pieces of a mono batch are mono
    batches of its language, of a cross batch cross batches)."""
    from dataclasses import replace

    return [replace(big, pairs=big.pairs[s:s + b]) for s in range(0, len(big.pairs), b)]


def worker(spec: dict) -> dict:
    import torch

    sampler, (tr,) = _setup(spec, (spec["chunk"],))
    rss_loaded = rss_mib()
    _warm_up([tr], sampler)
    b = spec["batch_size"]
    times, pairs = [], 0
    for step in range(spec["source_steps"]):
        big = sampler.global_batch(step)
        for piece in _pieces(big, b):
            t0 = time.perf_counter()
            rec = tr.step(piece)
            times.append(time.perf_counter() - t0)
            pairs += len(piece.pairs)
        print(f"  batch {b} chunk {spec['chunk']}: source batch {step} ({big.type} {big.language or ''}, "
              f"{len(big.pairs)} pairs) done, {pairs / sum(times):.2f} pairs/s so far, loss {rec['loss']}", flush=True)
    return {"step_times_s": [round(t, 2) for t in times], "median_s_per_step": round(statistics.median(times), 2),
            "pairs_per_s": round(pairs / sum(times), 2), "pairs_timed": pairs, "rss_after_load_mib": rss_loaded,
            "torch_threads": torch.get_num_threads(), "fp32": True, "freeze_embeddings": True}


def interleaved_worker(spec: dict) -> dict:
    """Plain batches of `plain_batch` and cached whole source batches, in one process, in turn."""
    import torch

    sampler, (plain, cached) = _setup(spec, (None, spec["chunk"]))
    _warm_up([plain, cached], sampler)
    trainers = {"plain": plain, "cached": cached}
    secs = {"plain": 0.0, "cached": 0.0}
    b = spec["plain_batch"]
    log, each = [], 0  # each: pairs trained by each method
    for r in range(spec["rounds"]):
        for step in range(spec["source_steps"]):
            big = sampler.global_batch(step)
            pieces = {"plain": _pieces(big, b), "cached": [big]}
            each += len(big.pairs)
            for mode in ("plain", "cached") if (r + step) % 2 == 0 else ("cached", "plain"):
                t0 = time.perf_counter()
                for piece in pieces[mode]:
                    trainers[mode].step(piece)
                dt = time.perf_counter() - t0
                secs[mode] += dt
                log.append({"round": r, "source_batch": step, "mode": mode, "seconds": round(dt, 2),
                            "pairs_per_s": round(len(big.pairs) / dt, 2)})
                print(f"  round {r} source batch {step} ({big.type} {big.language or ''}) {mode}: "
                      f"{len(big.pairs) / dt:.2f} pairs/s", flush=True)
    rate = {m: round(each / secs[m], 2) for m in secs}
    return {"plain_batch": b, "cached_batch": spec["source_batch"], "chunk": spec["chunk"],
            "rounds": spec["rounds"], "pairs_each": each, "plain_pairs_per_s": rate["plain"],
            "cached_pairs_per_s": rate["cached"], "ratio": round(rate["cached"] / rate["plain"], 3),
            "log": log, "torch_threads": torch.get_num_threads()}


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        spec = json.loads(Path(sys.argv[2]).read_text(encoding="utf-8"))
        write_worker_result(sys.argv[3], interleaved_worker(spec) if spec.get("interleaved") else worker(spec))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs")
    ap.add_argument("--settings", default="32:plain,32:cached,512:cached,512:plain,128:plain,128:cached",
                    help="batch:mode in the order run (results are written after each)")
    ap.add_argument("--chunk", type=int, default=32)
    ap.add_argument("--source-steps", type=int, default=2,
                    help="global batches of --source-batch pairs that every setting trains on")
    ap.add_argument("--source-batch", type=int, help="default: the largest batch size of --settings")
    ap.add_argument("--repeat", default="", help="batch:mode=N,...: run these settings N times, "
                    "interleaved with the others (pairs/s: median of the runs; peak RSS: max)")
    ap.add_argument("--interleaved", type=int, default=0, metavar="ROUNDS",
                    help="then measure plain batch 32 vs cached source batches in one process, in turn")
    ap.add_argument("--out", default=str(RESULTS / "grad_cache.json"))
    ap.add_argument("--merge", nargs="+", metavar="JSON",
                    help="measure nothing: write the results of these files (run side by side) to --out")
    args = ap.parse_args()
    if args.merge:
        parts = [json.loads(Path(p).read_text(encoding="utf-8")) for p in args.merge]
        args.chunk = parts[0]["chunk"]
        args.source_steps = parts[0]["source_steps"]
        args.source_batch = parts[0]["source_batch"]
        inter = next((p["interleaved"] for p in parts if p.get("interleaved")), None)
        write(args, [r for part in parts for r in part["results"]], parts[0]["machine"], inter)
        return

    pairs = str(pairs_dir(args.pairs))
    repeat = {k: int(v) for k, v in (x.split("=") for x in args.repeat.split(",") if x)}
    settings = args.settings.split(",")
    args.source_batch = args.source_batch or max(int(st.split(":")[0]) for st in settings)
    order = [st for r in range(max([1, *repeat.values()])) for st in settings if r < repeat.get(st, 1)]
    runs: dict[str, list[dict]] = {}
    for setting in order:
        b, mode = int(setting.split(":")[0]), setting.split(":")[1]
        chunk = args.chunk if mode == "cached" else None
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        r = run_worker("bench.grad_cache", {"batch_size": b, "chunk": chunk, "pairs": pairs,
                                            "source_batch": args.source_batch, "source_steps": args.source_steps})
        r.update(batch_size=b, mode=mode, chunk=chunk, wall_s=round(time.perf_counter() - t0, 1),
                 load_avg_1min_before=round(load, 2), load_avg_1min_after=round(os.getloadavg()[0], 2))
        runs.setdefault(setting, []).append(r)
        print(f"batch {b:4d} {mode:6s}: {r['pairs_per_s']:6.2f} pairs/s, peak RSS {r['peak_rss_mib']:7.1f} MiB",
              flush=True)
        write(args, [_combined(rs) for rs in runs.values()])
    if args.interleaved:
        load = os.getloadavg()[0]
        inter = run_worker("bench.grad_cache", {"interleaved": True, "plain_batch": 32, "chunk": args.chunk,
                                                "pairs": pairs, "source_batch": args.source_batch,
                                                "source_steps": args.source_steps, "rounds": args.interleaved})
        inter.update(load_avg_1min_before=round(load, 2), load_avg_1min_after=round(os.getloadavg()[0], 2))
        print(f"interleaved: plain 32 {inter['plain_pairs_per_s']} pairs/s, cached {args.source_batch} "
              f"{inter['cached_pairs_per_s']} pairs/s: {inter['ratio']}x", flush=True)
        write(args, [_combined(rs) for rs in runs.values()], interleaved=inter)


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


def write(args, rows: list[dict], mach: dict | None = None, interleaved: dict | None = None) -> None:
    """The results so far, with the target ratios where their settings are measured (the
    speed ratio from `interleaved` where it was measured)."""
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
        if interleaved and interleaved["cached_batch"] == big:
            targets[f"cached_{big}_pairs_per_s_over_plain_32_separate_runs"] = targets.pop(
                f"cached_{big}_pairs_per_s_over_plain_32")
            targets[f"cached_{big}_pairs_per_s_over_plain_32"] = interleaved["ratio"]
        if c32:
            targets[f"cached_{big}_peak_rss_over_cached_32"] = round(c_big["peak_rss_mib"] / c32["peak_rss_mib"], 3)
    write_json(args.out, {"bench": "grad_cache", "model": "me5-small", "strategy": "hybrid",
                          "chunk": args.chunk, "source_batch": args.source_batch, "source_steps": args.source_steps,
                          "pairs_per_setting": args.source_batch * args.source_steps, "warmup_steps_of_32_pairs": 1,
                          "machine": mach or {**machine(), **cpu_facts()}, "results": rows,
                          "interleaved": interleaved, "targets": targets})
    print(json.dumps(targets), f"-> {args.out}", flush=True)


if __name__ == "__main__":
    main()
