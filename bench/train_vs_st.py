"""Benchmark: training pairs/s of this tool's trainer vs sentence-transformers'
`SentenceTransformerTrainer` with `MultipleNegativesRankingLoss`, on the same batches.

    python -m bench.train_vs_st [--pairs DIR] [--model me5-small] [--steps 6] [--warmup 2]
                                [--rounds 2] [--settings frozen,unfrozen]
                                [--precisions auto|fp32|bf16|fp32,bf16] [--ray]

Both sides: mE5-small, batch 32, fp32 and, where the CPU has fast bf16 (`--precisions auto`:
oneDNN's bf16 support, as the trainer decides), bf16 autocast (ST: `bf16=True, use_cpu=True`);
AdamW lr 3e-5,
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
`--warmup` steps are not timed.
Beside pairs/s, each of our rows states how near the machine's limit it runs: the useful
FLOPs of the timed steps (`bench.flops.step_flops`: forward + backward on the unpadded
tokens) per second, over the GEMM rate measured in the same precision at the start
(`bench.flops.gemm_rate`, the best of 5 products of 2048-square matrices). Each (tool, setting) runs in its own subprocess (peak RSS is
that process's `ru_maxrss`), interleaved ours, ST, ours, ST, ...; each run's median step
time, and of the rounds the best (the machine is shared: other jobs only ever slow a round
down, by up to 3x here), as in `bench.encode_vs_st`.
(Earlier machines' results also hold `ours_padded`: ours before the length-sorted chunks.)

`--ray` also times full `hybrid.train.train` runs (Ray Train, 1 and 2 workers, same steps,
the trainer's own precision choice):
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

from bench.common import (
    RESULTS,
    machine,
    pairs_dir,
    run_worker,
    with_earlier_machines,
    write_worker_result,
)
from bench.flops import DTYPES, gemm_rate

MODULE = "bench.train_vs_st"
SETTINGS = {"frozen": True, "unfrozen": False}


def _cfg(pairs: str, batch_size: int, steps: int, workers: int = 1, bf16: bool = True):
    from hybrid.train import load_profile

    return load_profile("quick").override(**{
        "data.pairs": pairs, "data.batch_size": batch_size, "data.val_ids": 0,
        "run.steps": steps, "run.val_every": steps, "run.workers": workers, "run.bf16": bf16})


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

    n = spec["warmup"] + spec["steps"]
    cfg, _, texts, batches = _batches(spec["pairs"], spec["batch_size"], n)
    # as a Ray worker on CPU: frozen embeddings if asked, training mode, fast dropout masks
    enc = prepare_encoder(BiEncoder.from_pretrained(spec["model_path"]), torch.device("cpu"), spec["freeze"])
    flops = [_flops(enc, texts, gb, cfg) for gb in batches][spec["warmup"]:]
    params = trainable(enc)
    opt, sched = make_optimizer(params, cfg)
    ends, losses = [time.perf_counter()], []
    for step, gb in enumerate(batches):
        torch.manual_seed(step)
        loss = batch_loss(enc, texts, gb, cfg, spec["bf16"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(params.values()), cfg.optim.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(round(loss.item(), 4))
        ends.append(time.perf_counter())
    times = [b - a for a, b in zip(ends, ends[1:], strict=False)][spec["warmup"]:]
    return {"step_times_s": [round(t, 3) for t in times], "losses": losses, "step_flops": flops,
            "trainable_params": sum(p.numel() for p in params.values())}


def _flops(enc, texts, gb, cfg) -> float:
    """Useful FLOPs of one training step on global batch `gb` (its texts as `batch_loss` gets
    them, tokenized and truncated as the encoder does)."""
    from bench.flops import step_flops

    qs, ps, hs = texts.batch(gb, cfg.data.hard_negatives, cfg.run.seed)
    lengths = [len(x) for kind, xs in (("query", qs), ("passage", ps + hs))
               for x in enc.length_order(xs, kind)[0]["input_ids"]]
    return step_flops(enc.model.config, lengths)


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
            bf16=spec["bf16"], use_cpu=True, seed=0, report_to="none", save_strategy="no",
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
        cfg = _cfg(pairs, batch_size, steps, workers, bf16=None).override(
            **{"model.model": "me5-small", "out": str(Path(tmp) / "out")})
        t0 = time.perf_counter()
        out = train(cfg)
        wall = time.perf_counter() - t0
        summary = json.loads((Path(out) / "train_summary.json").read_text(encoding="utf-8"))
        log = [json.loads(x) for x in (Path(out) / "train_log.jsonl").read_text().splitlines()]
    rates = [r["pairs_per_s"] for r in log]
    timed = rates[1:] if len(rates) > 1 else rates  # step 1 warms up
    return {"workers": workers, "steps": len(log), "bf16": summary.get("bf16"),
            "driver_wall_s": round(wall, 1),
            "worker_wall_s": summary["wall_time_s"], "train_time_s": summary["train_time_s"],
            "pairs_per_s_all_steps": summary["pairs_per_s"],
            "median_pairs_per_s_after_first": round(statistics.median(timed), 2),
            "overhead_s": round(wall - summary["train_time_s"], 1),
            "step_pairs_per_s": rates}


def _precisions(arg: str) -> list[str]:
    """`--precisions`: auto is fp32, plus bf16 where oneDNN has bf16 kernels for this CPU."""
    if arg == "auto":
        import torch

        from hybrid.train.core import bf16_supported

        return ["fp32"] + (["bf16"] if bf16_supported(torch.device("cpu")) else [])
    out = arg.split(",")
    bad = [p for p in out if p not in DTYPES]
    if bad:
        raise SystemExit(f"--precisions: unknown {', '.join(bad)} (choose fp32, bf16 or auto)")
    return out


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
    ap.add_argument("--precisions", default="auto",
                    help="fp32, bf16 or both comma-separated; auto: fp32, and bf16 where the CPU has it")
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
    precisions = _precisions(args.precisions)
    mach = machine()
    gemm = {p: gemm_rate(p) for p in precisions}
    print("GEMM GFLOP/s: " + ", ".join(f"{p} {r}" for p, r in gemm.items()), flush=True)
    settings = [(p, s) for p in precisions for s in args.settings.split(",")]
    runs: dict[tuple[str, str, str], list[dict]] = {}
    for rnd in range(args.rounds):
        for prec, setting in settings:
            for tool in ("ours", "st"):
                spec = {"tool": tool, "freeze": SETTINGS[setting], "bf16": prec == "bf16",
                        "pairs": pairs, "model_path": model_path, "batch_size": args.batch_size,
                        "steps": args.steps, "warmup": args.warmup}
                r = run_worker(MODULE, spec)
                runs.setdefault((prec, setting, tool), []).append(r)
                med = statistics.median(r["step_times_s"])
                print(f"round {rnd + 1}: {prec}+{setting:8s} {tool:4s} {args.batch_size / med:6.2f} pairs/s "
                      f"(median {med:.2f} s/step), peak RSS {r['peak_rss_mib']:.0f} MiB", flush=True)
    rows = []
    for prec, setting in settings:
        row = {"setting": f"{prec}+{setting}", "precision": prec, "gemm_gflops": gemm[prec]}
        for tool in ("ours", "st"):
            rs = runs[(prec, setting, tool)]
            per_round = [statistics.median(r["step_times_s"]) for r in rs]
            best = min(range(len(rs)), key=per_round.__getitem__)
            med = per_round[best]  # best round: other jobs only ever slow a round down
            row[tool] = {"pairs_per_s": round(args.batch_size / med, 2), "median_s_per_step": round(med, 3),
                         "round_medians_s": [round(t, 3) for t in per_round],
                         "step_times_s": [r["step_times_s"] for r in rs],
                         "peak_rss_mib": max(r["peak_rss_mib"] for r in rs),
                         "trainable_params": rs[0]["trainable_params"],
                         "first_step_loss": rs[0]["losses"][0] if rs[0]["losses"] else None}
            if tool == "st":
                row[tool]["optimizer"] = rs[0].get("optimizer")
            if rs[best].get("step_flops"):  # the best round's useful FLOP/s over its time
                r = rs[best]
                achieved = sum(r["step_flops"]) / sum(r["step_times_s"]) / 1e9
                row[tool]["achieved_gflops"] = round(achieved, 1)
                row[tool]["of_gemm_rate"] = round(achieved / gemm[prec], 3)
        row["ratio"] = round(row["ours"]["pairs_per_s"] / row["st"]["pairs_per_s"], 2)
        rows.append(row)
        print(f"{row['setting']}: ours {row['ours']['pairs_per_s']} vs ST {row['st']['pairs_per_s']} "
              f"pairs/s = {row['ratio']}x", flush=True)
    result = {"bench": "train_vs_st", "model": args.model, "batch_size": args.batch_size,
              "max_len": {"query": 64, "passage": 128, "st_max_seq_length": 128,
                          "questions_over_64_tokens": over},
              "timed_steps_per_run": args.steps, "warmup_steps": args.warmup, "rounds": args.rounds,
              "machine": mach, "gemm_gflops": gemm, "results": rows,
              "command": " ".join(["python -m bench.train_vs_st"] + sys.argv[1:])}
    if args.ray:
        n = args.warmup + args.steps
        result["ray"] = [ray_run(pairs, args.batch_size, n, w) for w in (1, 2)]
        for r in result["ray"]:
            print(f"ray {r['workers']} worker(s): {r['median_pairs_per_s_after_first']} pairs/s per step, "
                  f"run {r['driver_wall_s']} s (overhead {r['overhead_s']} s)", flush=True)
    result["machine"]["load_avg_1min_after"] = machine()["load_avg_1min"]
    write_json(args.out, with_earlier_machines(args.out, result))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())


# ------------------------------------------------------------------- report
#: Targets: pairs/s over sentence-transformers' at the same setting, and useful FLOP/s over
#: the machine's GEMM rate in the same precision.
TARGETS = {"ratio": 1.5, "of_gemm_rate": 0.6}
#: The share of the GEMM rate is a target for fp32 with frozen word embeddings (what a CPU
#: without bf16 trains); elsewhere it is reported (bf16 autocast adds casts, and trained word
#: embeddings add a dense 250k x 384 gradient and its optimizer step, neither a GEMM).
GEMM_TARGET_SETTING = "fp32+frozen"
COMMAND = "python -m bench.train_vs_st --ray --steps 5 --warmup 1 --rounds 2"


def _where(tr: dict) -> str:
    cpu = tr["machine"].get("cpu")
    return f"{cpu['model']}" if cpu else "earlier machine, Intel Xeon with AMX"


def _ok(value, target) -> str:
    return "pending" if value is None else "met" if value >= target else "**missed**"


def report_rows(tr: dict | None) -> list[tuple]:
    """BENCHMARKS.md's summary rows: per machine (this result, then its earlier machines) and
    setting, ours vs ST and, where measured, the share of the GEMM rate."""
    if not tr:
        return [("training vs ST", "pending", f">= {TARGETS['ratio']}x", "pending", "-", COMMAND)]
    rows = []
    for t in (tr, *tr.get("earlier_machines", [])):
        for r in t["results"]:
            ours = r["ours"]
            measured = f"{ours['pairs_per_s']} vs {r['st']['pairs_per_s']} = **{r['ratio']}x**"
            target, status = f">= {TARGETS['ratio']}x", _ok(r["ratio"], TARGETS["ratio"])
            if "of_gemm_rate" in ours:
                measured += (f"; {ours['achieved_gflops']} GFLOP/s = **{ours['of_gemm_rate']:.0%}** of "
                             f"{r['gemm_gflops']} (GEMM)")
                if r["setting"] == GEMM_TARGET_SETTING:
                    target += f", >= {TARGETS['of_gemm_rate']:.0%} of GEMM"
                    gemm_ok = _ok(ours["of_gemm_rate"], TARGETS["of_gemm_rate"])
                    status = status if status == gemm_ok else f"{status} / {gemm_ok}"
            rows.append((f"training, {r['setting']}, {_where(t)} (pairs/s, ours vs ST)", measured,
                         target, status, t["machine"]["date_utc"], t.get("command", COMMAND)))
    return rows


def report_detail(tr: dict | None) -> list[str]:
    """BENCHMARKS.md's training sections for each machine's result."""
    lines = []
    for t in (tr, *tr.get("earlier_machines", [])) if tr else ():
        m = t["machine"]
        cpu = m.get("cpu")
        lines += ["", f"## Training detail, {_where(t)} (s/step: median of each round's steps, the best "
                  "round; peak RSS of each process)", "",
                  "| setting | tool | pairs/s | s/step | each round's median s/step | useful GFLOP/s (of GEMM) "
                  "| peak RSS MiB | trainable params | first-step loss |",
                  "| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |"]
        for r in t["results"]:
            for tool, name in (("ours", "hybrid"), ("st", "sentence-transformers"),
                               ("ours_padded", "hybrid, one padded batch")):
                if tool not in r:
                    continue
                x = r[tool]
                rounds = " / ".join(str(v) for v in x.get("round_medians_s", []))
                gf = (f"{x['achieved_gflops']} ({x['of_gemm_rate']:.0%})" if "achieved_gflops" in x
                      else "-")
                lines.append(f"| {r['setting']} | {name} | {x['pairs_per_s']} | {x['median_s_per_step']} | "
                             f"{rounds} | {gf} | {x['peak_rss_mib']:.0f} | {x['trainable_params']:,} | "
                             f"{x['first_step_loss']} |")
        precs = sorted({r.get("precision", "bf16") for r in t["results"]})
        lines += ["", f"{t['timed_steps_per_run']} timed steps after {t['warmup_steps']} warm-up steps per "
                  f"process, {t['rounds']} interleaved rounds; batch {t['batch_size']}, "
                  f"{' and '.join(precs)}, questions 64 / passages 128 tokens (ST: max_seq_length 128; "
                  f"{t['max_len']['questions_over_64_tokens']} training questions exceed 64 tokens)."]
        if t.get("gemm_gflops"):
            lines += ["", "GEMM rate (2048-square matrix product, best of 5, "
                      f"{m.get('torch_threads')} threads): "
                      + ", ".join(f"{p} {v} GFLOP/s" for p, v in t["gemm_gflops"].items())
                      + "; useful FLOPs: `bench/flops.py`."]
        if cpu:
            lines += ["", f"{cpu['model']} ({', '.join(cpu['flags'])}), {m.get('cpus')} cores, "
                      f"torch {m.get('torch')}, {m.get('torch_threads')} threads, load average "
                      f"{m.get('load_avg_1min')} before / {m.get('load_avg_1min_after')} after, "
                      f"{m.get('date_utc')} UTC."]
        if t.get("ray"):
            lines += ["", f"Full Ray Train runs and scaling, {_where(t)} (same batches, `hybrid.train.train`, "
                      "the trainer's precision):", "",
                      "| workers | precision | steps | pairs/s per step (median, after step 1) | train time s | "
                      "run wall s (driver) | overhead s (Ray start, load, save) |",
                      "| ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
            for r in t["ray"]:
                prec = {True: "bf16", False: "fp32"}.get(r.get("bf16"), "bf16")
                lines.append(f"| {r['workers']} | {prec} | {r['steps']} | {r['median_pairs_per_s_after_first']} | "
                             f"{r['train_time_s']:.1f} | {r['driver_wall_s']} | {r['overhead_s']} |")
    return lines
