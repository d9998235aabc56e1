"""Scaling of the out-of-core pairs table (issue 16, item 5): 10k to 10M rows.

A synthetic parallel QA table (`generate`): 12 languages, ids present in 3-12 of them
(partially parallel, uniform), two datasets (70/30), question ~60 and positive ~150
characters of random lowercase words (XQuAD-like lengths), no context, no hard negatives;
written in chunks with a pyarrow ParquetWriter. For each size, in fresh subprocesses
(`bench.common.run_worker`, so each peak RSS is its own, read from /proc/self/status VmHWM):

- driver: `hybrid.train.trainer.precheck` on a cold cache (validates the file and derives
  the memory-mapped table: `hybrid.data.table`), then a second, warm precheck;
- worker: one training worker's data path (rank 0 of 2, the tiny model's tokenizer; the
  model weights are the same at every size and left out): open the table (sha256 + maps),
  build the samplers, fetch and tokenize the texts of its first batch (time to first batch),
  then 50 batches; sampler batches/s (one epoch's plan, and materialising 2000 global
  batches). Peak RSS is VmHWM; "above base" subtracts the peak after imports and tokenizer.

Results: bench/results/table_scale.json (machine: CPU model, flags, threads), a PNG plot
(bench/results/table_scale.png) and the table printed for BENCHMARKS.md. The generated files
and the table cache live in a temporary directory, deleted after each size.

    python -m bench.table_scale                    # 10k, 100k, 1M, 10M
    python -m bench.table_scale --sizes 10000,100000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import RESULTS, machine, run_worker

LANGS = ["ar", "de", "el", "en", "es", "fr", "hi", "ru", "th", "tr", "vi", "zh"]
CHUNK_IDS = 100_000
Q_LEN, P_LEN = 60, 150
BATCH, WORLD, FETCH_BATCHES, MATERIALISE = 32, 2, 50, 2000


def _texts(rng: np.random.Generator, pool: np.ndarray, lengths: np.ndarray):
    """A pyarrow string array of the given lengths, cut from random places of `pool`."""
    import pyarrow as pa

    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    starts = rng.integers(0, len(pool) - lengths.max(), len(lengths))
    idx = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
    data = pool[idx]
    return pa.LargeStringArray.from_buffers(len(lengths), pa.py_buffer(offsets), pa.py_buffer(data)).cast(pa.string())


def generate(path: Path, rows: int, seed: int = 0) -> dict:
    """Write a synthetic pairs.parquet of about `rows` rows (exactly: ids are added until
    `rows` is reached, the last id cut); returns counts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hybrid.data.pairs import PAIRS_SCHEMA

    rng = np.random.default_rng(seed)
    words = ["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), rng.integers(2, 10))) for _ in range(5000)]
    pool = np.frombuffer(" ".join(rng.choice(words, 400_000)).encode(), dtype=np.uint8)
    written, next_id, n_ids = 0, 0, 0
    with pq.ParquetWriter(path, PAIRS_SCHEMA) as w:
        while written < rows:
            k = rng.integers(3, len(LANGS) + 1, CHUNK_IDS)  # languages per id
            order = rng.random((CHUNK_IDS, len(LANGS))).argsort(axis=1)
            take = np.arange(len(LANGS))[None, :] < k[:, None]
            id_of = np.repeat(np.arange(CHUNK_IDS), k)
            lang = order[take]
            n = min(len(id_of), rows - written)
            id_of, lang = id_of[:n], lang[:n]
            ids = next_id + id_of
            ds = np.where(ids % 10 < 7, 0, 1)
            table = pa.table({
                "dataset": pa.DictionaryArray.from_arrays(pa.array(ds, pa.int32()), ["syn-a", "syn-b"]).cast(pa.string()),
                "xling_id": pa.array([f"{i:x}" for i in ids.tolist()], pa.string()),
                "lang": pa.DictionaryArray.from_arrays(pa.array(lang, pa.int32()), LANGS).cast(pa.string()),
                "question": _texts(rng, pool, rng.integers(Q_LEN // 2, Q_LEN * 3 // 2 + 1, n)),
                "positive": _texts(rng, pool, rng.integers(P_LEN // 2, P_LEN * 3 // 2 + 1, n)),
                "context": pa.nulls(n, pa.string()),
                "hard_negatives": pa.array([[]] * n, pa.list_(pa.string())),
            }, schema=PAIRS_SCHEMA)
            w.write_table(table, row_group_size=1 << 17)
            written += n
            n_ids += int(id_of.max()) + 1
            next_id += CHUNK_IDS
    return {"rows": written, "ids": n_ids, "bytes": path.stat().st_size}


def _status_mib(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def _vmhwm_mib() -> float:
    """Peak resident set size of this process so far."""
    return _status_mib("VmHWM")


def _config(pairs: str, model: str):
    from hybrid.train.config import load_profile

    return load_profile("tiny").override(**{
        "data.pairs": pairs, "out": "unused", "model.model": model, "data.strategy": "hybrid",
        "data.alpha": 0.5, "data.batch_size": BATCH, "run.workers": WORLD, "data.val_ids": 64,
        "data.hard_negatives": 0})


def worker(spec: dict) -> dict:
    """One measurement in this (fresh) process; see the module docstring."""
    import torch

    torch.set_num_threads(1)
    from hybrid.train.data import Texts, load_table, make_samplers

    cfg = _config(spec["pairs"], spec["model"])
    base = _vmhwm_mib()
    out: dict = {"role": spec["role"], "base_rss_mib": base}
    if spec["role"] == "driver":
        import hybrid.model.check  # noqa: F401  (imports outside the timed part)
        from hybrid.train.trainer import precheck

        out["base_rss_mib"] = _vmhwm_mib()
        t0 = time.perf_counter()
        precheck(cfg)
        out["cold_s"] = round(time.perf_counter() - t0, 2)
        out["cold_peak_rss_mib"] = _vmhwm_mib()
        t0 = time.perf_counter()
        precheck(cfg)
        out["warm_s"] = round(time.perf_counter() - t0, 2)
        out["peak_rss_mib"] = _vmhwm_mib()
        return out
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(spec["model"])  # the tiny model's (XLM-R's) tokenizer
    out["base_rss_mib"] = base = _vmhwm_mib()
    t0 = time.perf_counter()
    table = load_table(spec["pairs"])
    t_open = time.perf_counter()
    sampler, _ = make_samplers(table, cfg, rank=0, world=WORLD)
    t_samplers = time.perf_counter()
    out["rss_after_samplers_mib"] = _status_mib("VmRSS")
    texts = Texts(table)
    first = sampler.local(sampler.global_batch(0))
    qs, ps, _ = texts.batch(first, 0, 0)
    tok(qs, padding=True, truncation=True), tok(ps, padding=True, truncation=True)
    t_first = time.perf_counter()
    for step in range(1, FETCH_BATCHES):
        qs, ps, _ = texts.batch(sampler.local(sampler.global_batch(step)), 0, 0)
        tok(qs, padding=True, truncation=True), tok(ps, padding=True, truncation=True)
    t_fetch = time.perf_counter()
    n = min(MATERIALISE, len(sampler))
    for step in range(n):
        sampler.global_batch(step)
    t_mat = time.perf_counter()
    t_plan0 = time.perf_counter()
    sampler._compact_plan(1)  # the next epoch's plan, timed alone
    plan_s = time.perf_counter() - t_plan0
    out.update({
        "open_s": round(t_open - t0, 3), "samplers_s": round(t_samplers - t_open, 3),
        "first_batch_s": round(t_first - t0, 3),
        "fetch_tokenize_per_batch_ms": round(1000 * (t_fetch - t_first) / (FETCH_BATCHES - 1), 2),
        "steps_per_epoch": len(sampler), "epoch_plan_s": round(plan_s, 3),
        "plan_batches_per_s": round(len(sampler) / plan_s, 1),
        "materialise_batches_per_s": round(n / (t_mat - t_fetch), 1),
        "rss_end_mib": _status_mib("VmRSS"), "rss_anon_end_mib": _status_mib("RssAnon"),
        "peak_rss_mib": _vmhwm_mib(), "peak_above_base_mib": round(_vmhwm_mib() - base, 1)})
    return out


def lscpu() -> dict:
    info = {}
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            k, _, v = line.partition(":")
            if k.strip() in ("Model name", "Flags", "CPU(s)", "Thread(s) per core"):
                info[k.strip()] = v.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return info


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r["rows"] for r in results]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    ax.plot(rows, [r["worker"]["peak_rss_mib"] for r in results], "o-", label="worker peak RSS")
    ax.plot(rows, [r["driver"]["peak_rss_mib"] for r in results], "s-", label="driver precheck peak RSS")
    ax.set_ylabel("MiB")
    ax = axes[1]
    ax.plot(rows, [r["worker"]["first_batch_s"] for r in results], "o-", label="worker: time to first batch")
    ax.plot(rows, [r["driver"]["cold_s"] for r in results], "s-", label="driver: first precheck (derive)")
    ax.plot(rows, [r["driver"]["warm_s"] for r in results], "^-", label="driver: warm precheck")
    ax.set_ylabel("s")
    ax = axes[2]
    ax.plot(rows, [r["worker"]["plan_batches_per_s"] for r in results], "o-", label="epoch plan")
    ax.plot(rows, [r["worker"]["materialise_batches_per_s"] for r in results], "s-", label="global_batch()")
    ax.set_ylabel("sampler batches/s")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("rows")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle("pairs table scaling (hybrid.data.table), batch 32, 2 workers")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def table_md(results: list[dict]) -> str:
    head = ("| rows | parquet MB | driver: first precheck s (derive) / warm s | driver peak RSS MiB | "
            "worker: first batch s | worker peak RSS MiB (above its imports + tokenizer) | sampler: epoch plan "
            "batches/s / global_batch() per s | fetch+tokenize ms/batch |\n"
            "| ---: | ---: | --- | ---: | ---: | --- | --- | ---: |\n")
    lines = []
    for r in results:
        d, w = r["driver"], r["worker"]
        lines.append(f"| {r['rows']:,} | {r['parquet_bytes'] / 1e6:.0f} | {d['cold_s']} / {d['warm_s']} | "
                     f"{d['peak_rss_mib']:.0f} | {w['first_batch_s']} | {w['peak_rss_mib']:.0f} "
                     f"({w['peak_above_base_mib']:.0f}) | {w['plan_batches_per_s']:,.0f} / "
                     f"{w['materialise_batches_per_s']:,.0f} | {w['fetch_tokenize_per_batch_ms']} |")
    return head + "\n".join(lines) + "\n"


CMD = "python -m bench.table_scale"


def report_rows(res: dict | None) -> list[tuple]:
    """BENCHMARKS.md's target rows (bench/run_all.py): a worker's peak RSS at the largest
    table over the smallest (<= 1 GiB), its time to first batch (<= 60 s), growth."""
    if not res or not res.get("results"):
        return [("pairs table scaling, 10k -> 10M rows", "pending", "<= 1 GiB, <= 60 s, linear",
                 "pending", "-", CMD)]
    rs = sorted(res["results"], key=lambda r: r["rows"])
    lo, hi = rs[0], rs[-1]
    when = res["machine"].get("date_utc", "-")
    extra = hi["worker"]["peak_rss_mib"] - lo["worker"]["peak_rss_mib"]
    first = hi["worker"]["first_batch_s"]
    n = f"{hi['rows'] // 1_000_000}M" if hi["rows"] >= 1_000_000 else f"{hi['rows']:,}"
    ratio = hi["rows"] / lo["rows"]
    growth = {"worker RSS": hi["worker"]["peak_rss_mib"] / lo["worker"]["peak_rss_mib"],
              "driver RSS": hi["driver"]["peak_rss_mib"] / lo["driver"]["peak_rss_mib"],
              "first batch": hi["worker"]["first_batch_s"] / max(lo["worker"]["first_batch_s"], 1e-9),
              "derive": hi["driver"]["cold_s"] / max(lo["driver"]["cold_s"], 1e-9)}
    linear = all(g <= ratio for g in growth.values())
    return [
        (f"pairs table, {n} rows: one worker's peak RSS above the same worker at {lo['rows']:,}",
         f"{hi['worker']['peak_rss_mib']:.0f} vs {lo['worker']['peak_rss_mib']:.0f} MiB = **+{extra:.0f} MiB**",
         "<= 1 GiB", "met" if extra <= 1024 else "**missed**", when, CMD),
        (f"pairs table, {n} rows: worker's time to first batch (cache derived by the driver's "
         f"precheck, {hi['driver']['cold_s']:.0f} s once)", f"**{first} s**", "<= 60 s",
         "met" if first <= 60 else "**missed**", when, CMD),
        (f"pairs table, {lo['rows']:,} -> {hi['rows']:,} rows: growth of every figure",
         ", ".join(f"{k} {v:.3g}x" for k, v in growth.items()) + f" for {ratio:,.0f}x rows",
         "at most linear", "met" if linear else "**missed**", when, CMD),
    ]


def report_detail(res: dict | None) -> list[str]:
    if not res or not res.get("results"):
        return []
    m = res["machine"]
    return ["", "## Pairs table scaling (`bench/table_scale.py`, `hybrid.data.table`)", "",
            f"Synthetic table (12 languages, ids in 3-12 of them, question ~60 / positive ~150 "
            f"characters), hybrid, batch {res['batch_size']}, {res['workers']} workers; each figure "
            "from a fresh process, peak RSS = VmHWM; worker = one training worker's data path with "
            "the tiny model's tokenizer (its imports are the floor). Plot: "
            f"`bench/results/table_scale.png`. {m.get('lscpu', {}).get('Model name', '?')}, "
            f"{m.get('torch_threads', '?')} torch threads, {m.get('date_utc', '?')} UTC; 1-minute "
            f"load average {m.get('load_avg_1min', '?')} at the start (other jobs: times are "
            "pessimistic).", "",
            *table_md(sorted(res["results"], key=lambda r: r["rows"])).rstrip("\n").split("\n")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", nargs=2, metavar=("SPEC", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--sizes", default="10000,100000,1000000,10000000")
    ap.add_argument("--out", default=str(RESULTS / "table_scale.json"))
    ap.add_argument("--report-only", action="store_true", help="plot and print the table from --out")
    args = ap.parse_args()
    if args.report_only:
        results = json.loads(Path(args.out).read_text(encoding="utf-8"))["results"]
        plot(results, Path(args.out).with_suffix(".png"))
        print(table_md(results))
        return
    if args.worker:
        spec = json.loads(Path(args.worker[0]).read_text(encoding="utf-8"))
        Path(args.worker[1]).write_text(json.dumps(worker(spec)), encoding="utf-8")
        return
    from hybrid.model import make_tiny_model

    results = []
    with tempfile.TemporaryDirectory(prefix="table-scale-", dir=os.environ.get("TMPDIR", "/tmp")) as tmp:
        model = str(make_tiny_model(Path(tmp) / "tiny"))
        for size in (int(s) for s in args.sizes.split(",")):
            d = Path(tmp) / f"rows-{size}"
            d.mkdir()
            t0 = time.perf_counter()
            counts = generate(d / "pairs.parquet", size)
            gen_s = time.perf_counter() - t0
            os.environ["HYBRID_CACHE"] = str(d / "cache")  # a cold cache per size
            spec = {"pairs": str(d), "model": model}
            drv = run_worker("bench.table_scale", dict(spec, role="driver"))
            wrk = run_worker("bench.table_scale", dict(spec, role="worker"))
            r = {"rows": counts["rows"], "ids": counts["ids"], "parquet_bytes": counts["bytes"],
                 "generate_s": round(gen_s, 1), "driver": drv, "worker": wrk}
            print(json.dumps(r), flush=True)
            results.append(r)
            shutil.rmtree(d)
    info = dict(machine(), **{"lscpu": lscpu(), "bench_threads": 1})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": info, "batch_size": BATCH, "workers": WORLD,
                               "results": results}, indent=2) + "\n", encoding="utf-8")
    plot(results, out.with_suffix(".png"))
    print(table_md(results))


if __name__ == "__main__":
    sys.exit(main())
