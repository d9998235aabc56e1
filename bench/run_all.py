"""Run the benchmarks and regenerate BENCHMARKS.md (`make bench`).

    python -m bench.run_all [--only train,encode,eval,demo,index] [--lock /tmp/hybrid-heavy.lock]
                            [--report-only]

Each benchmark writes `bench/results/<name>.json`; the table in BENCHMARKS.md is rebuilt from
those files, so `--report-only` regenerates it from the recorded results without timing
anything. `--lock PATH` holds an exclusive flock on PATH while timing (on a shared machine the
other heavy jobs wait, so they do not disturb the figures). `demo` runs `python -m infra.demo`
twice (a cold run on a fresh stack state, then the cached re-run; 11 minutes here), so the
default (all four, what `make bench` runs) takes about 40 minutes on this machine.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from bench.common import REPO, RESULTS, machine
from hybrid.io import write_json

BENCHES = {
    "train": [sys.executable, "-m", "bench.train_vs_st", "--ray", "--steps", "5", "--warmup", "1",
              "--rounds", "2"],
    "encode": [sys.executable, "-m", "bench.encode_vs_st"],
    "eval": [sys.executable, "-m", "bench.eval_matrix"],
    "index": [sys.executable, "-m", "bench.index_search"],  # ~20 min: not in DEFAULT
}
DEFAULT = ("train", "encode", "eval", "demo")
TARGETS = {"encode": 1.0, "encode_onnx": 1.5, "encode_int8": 2.2, "eval": 20.0,
           "demo_s": 20 * 60, "rerun_s": 60}


@contextmanager
def held(lock: str | None):
    if not lock:
        yield
        return
    with open(lock, "a") as fh:
        print(f"waiting for {lock} ...", flush=True)
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def run_demo(label: str | None = None) -> dict:
    """`python -m infra.demo` twice: a cold run, then the cached re-run.

    Cold means what a fresh clone gets: its own stack state dir (new Prefect database and
    result storage, new MLflow store, new Ray head), results dir and user cache
    (`HYBRID_CACHE`: the converted default model, cached embeddings) in a temporary directory,
    so a user's `.state`, cache or earlier runs cannot make the first run a cache hit (training
    is deterministic, so an earlier run's embeddings would be hits). The stack is stopped after.
    The run is added to `demo.json`'s runs with the machine, the training's precision and
    speed, and the held-out figures; the runs of other machines are kept. `label`: how the run
    differs from a plain one on this machine (e.g. an emulated CPU), shown in its rows.
    """
    out = {"machine": machine(), **({"label": label} if label else {})}
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        env = {**os.environ, "HYBRID_STATE": str(Path(tmp) / "state"),
               "HYBRID_CACHE": str(Path(tmp) / "cache")}  # the demo sets the rest
        cmd = [sys.executable, "-m", "infra.demo", "-p", f'results_dir="{Path(tmp) / "runs"}"']
        try:
            for name in ("cold", "cached"):
                t0 = time.perf_counter()
                rc = subprocess.run(cmd, cwd=REPO, env=env).returncode
                out[f"{name}_s"] = round(time.perf_counter() - t0, 1)
                out[f"{name}_rc"] = rc
            out.update(demo_figures(Path(tmp) / "runs"))
        finally:
            subprocess.run([sys.executable, "-m", "infra.stack", "down"], cwd=REPO, env=env)
    out["date_utc"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
    out["load_1min_after"] = round(os.getloadavg()[0], 2)
    out["command"] = "python -m bench.run_all --only demo (python -m infra.demo twice, fresh state and cache)"
    runs = demo_runs(_load("demo"))
    write_json(RESULTS / "demo.json", {"runs": [*runs, out]})
    return out


def demo_figures(results: Path) -> dict:
    """What the demo run in `results` trained and measured: the training's precision, steps
    and pairs/s, and each LAReQA report's summary mAP (mono, cross, multi) and language bias."""
    latest = json.loads((results / "latest.json").read_text(encoding="utf-8"))
    tr = json.loads((Path(latest["train_dir"]) / "train_summary.json").read_text(encoding="utf-8"))
    figures = {}
    for bench, report in latest["reports"].items():
        s = json.loads((Path(report).parent / "metrics.json").read_text(encoding="utf-8"))["summary"]
        figures[bench] = {**{k: round(s[k]["map"], 4) for k in ("mono", "cross", "multi") if k in s},
                          "language_bias": s.get("language_bias")}
    return {"train": {k: tr.get(k) for k in ("steps", "pairs_per_s", "train_time_s", "bf16")},
            "heldout_map": figures}


def demo_runs(doc: dict | None) -> list[dict]:
    """`demo.json`'s runs, oldest first (an older file held a single run at its top level)."""
    if not doc:
        return []
    return doc["runs"] if "runs" in doc else [doc]


def _load(name: str) -> dict | None:
    p = RESULTS / f"{name}.json"
    return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None


def _git_date(path: Path) -> str:
    """UTC date of the last commit of a result file written without a date."""
    out = subprocess.run(["git", "log", "-1", "--format=%cd", "--date=format-local:%Y-%m-%d %H:%M", "--",
                          str(path)], cwd=REPO, capture_output=True, text=True, env={"TZ": "UTC"})
    return out.stdout.strip() or "-"


def _ok(value, target, higher=True) -> str:
    if value is None:
        return "pending"
    return "met" if (value >= target if higher else value <= target) else "**missed**"


def report() -> str:
    """BENCHMARKS.md from the result files."""
    from bench import train_vs_st

    tr, en, ev, demo = _load("train_vs_st"), _load("encode_vs_st"), _load("eval_matrix"), _load("demo")
    rows = []
    rows += train_vs_st.report_rows(tr)
    eb = _load("encode_backends")
    for e in (eb, *eb.get("earlier_machines", [])) if eb else ():
        cpu = e["machine"]["cpu"]
        for tool, target in (("ours", TARGETS["encode"]), ("onnx", TARGETS["encode_onnx"]),
                             ("onnx-int8", TARGETS["encode_int8"])):
            if tool in e.get("ratio_vs_st", {}):
                cos = min(e["min_cosine_vs_torch"].get(tool, {"torch": 1.0}).values())
                rows.append((f"encoding, {'torch' if tool == 'ours' else tool} batch {e['batch_size']}, {e['threads']} thread(s), "
                             f"{cpu['model']} (texts/s vs ST torch; min cosine vs torch {cos})",
                             f"{e[tool]['best']['texts_per_s']['all']} vs "
                             f"{e['st']['best']['texts_per_s']['all']} = **{e['ratio_vs_st'][tool]}x**",
                             f">= {target}x", _ok(e["ratio_vs_st"][tool], target),
                             e["machine"]["date_utc"], "python -m bench.encode_vs_st"))
    if en:
        b = en["ours"]["best"]["texts_per_s"], en["st"]["best"]["texts_per_s"]
        rows.append((f"encoding, {en['precision']} batch {en['batch_size']} (texts/s, ours vs ST; earlier machine)",
                     f"{b[0]['all']} vs {b[1]['all']} = **{en['ratio']}x**", ">= 1.0x",
                     _ok(en["ratio"], TARGETS["encode"]), en["machine"]["date_utc"],
                     "python -m bench.encode_vs_st"))
    else:
        rows.append(("encoding vs ST", "pending", ">= 1.0x", "pending", "-", "python -m bench.encode_vs_st"))
    for e in (ev, *ev.get("earlier_machines", [])) if ev else ():
        same = "identical" if e["identical_within_1e-6"] else "DIFFERENT"
        cpu = e["machine"].get("cpu", {}).get("model", "earlier machine")
        rows.append((f"evaluation, 132-setting XQuAD-R matrix vs sklearn per-query loop, {cpu}",
                     f"{e['matrix_seconds']} s vs {e['reference_seconds']} s = **{e['speedup']}x**, "
                     f"mAP {same} (max diff {e['max_abs_map_diff']:.1e})", ">= 20x, identical",
                     _ok(e["speedup"] if e["identical_within_1e-6"] else 0, TARGETS["eval"]),
                     e["machine"].get("date_utc") or _git_date(RESULTS / "eval_matrix.json"),
                     "python -m bench.eval_matrix"))
    rows += _demo_rows(demo_runs(demo))

    from bench import table_scale

    ts = _load("table_scale")
    rows += table_scale.report_rows(ts)
    gc = _load("grad_cache")
    rows += _grad_cache_rows(gc)
    from bench import index_search

    ix = _load("index_search")
    rows += index_search.report_rows(ix)
    notes = [f"Demo: {r['note']}" for r in demo_runs(demo) if r.get("note")]
    lines = ["# Benchmarks", "",
             "Generated by `make bench` (`python -m bench.run_all`) from `bench/results/*.json`; "
             "details, profiles and what was tried: `docs/performance.md`.", ""]
    m = {**machine(), **(tr or en or ev or {}).get("machine", {})}
    lines += [f"Machine: {m.get('platform', '?')}, {m.get('cpus', '?')} CPU cores (shared with other "
              f"engineers' jobs), no GPU, torch {m.get('torch', '?')}, {m.get('torch_threads', '?')} "
              "threads. Every timed run was taken holding `flock /tmp/hybrid-heavy.lock` (the "
              "machine's lock for heavy jobs), so no other locked heavy job ran meanwhile; jobs "
              "that did not take the lock could still run (the 1-minute load average before and after "
              "is recorded in each result file).", "",
              "| benchmark | measured | target | status | date (UTC) | command |",
              "| --- | --- | --- | --- | --- | --- |"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    lines += [""] + notes if notes else []
    lines += train_vs_st.report_detail(tr)
    if en:
        lines += ["", "## Encoding detail (best of the rounds, texts/s)", "",
                  "| kind | texts | hybrid | sentence-transformers | ratio |", "| --- | ---: | ---: | ---: | ---: |"]
        for k in ("query", "passage"):
            lines.append(f"| {k} | {en['texts'][k]} | {en['ours']['best']['texts_per_s'][k]} | "
                         f"{en['st']['best']['texts_per_s'][k]} | {en['ratio_by_kind'][k]} |")
        lines += ["", f"Embeddings agree: minimum cosine ours vs ST {en['min_cosine_ours_vs_st']}. "
                  f"Peak RSS: hybrid {en['ours']['best']['peak_rss_mib']:.0f} MiB, "
                  f"ST {en['st']['best']['peak_rss_mib']:.0f} MiB."]
    lines += table_scale.report_detail(ts)
    lines += _grad_cache_detail(gc)
    lines += _gpu_detail(_load("gpu_check"), _load("gpu_check_unpadded"))
    lines += index_search.report_detail(ix)
    return "\n".join(lines) + "\n"


def _demo_rows(runs: list[dict]) -> list[tuple]:
    """Two rows per demo run (cold, cached re-run), labelled with the run's CPU and training
    precision; a run recorded before machines were ("earlier machine") keeps its figures."""
    rows = []
    for r in runs or [{}]:
        cold = r.get("cold_s") if r.get("cold_rc") == 0 else None
        cached = r.get("cached_s") if r.get("cached_rc") == 0 else None
        cpu = r.get("machine", {}).get("cpu", {})
        tr = r.get("train", {})
        where = (f"{cpu.get('model', '?')}, {'bf16' if tr.get('bf16') else 'fp32'} training"
                 if cpu else "earlier machine") + (f", {r['label']}" if r.get("label") else "")
        held = r.get("heldout_map", {}).get("xquad-r")
        figures = (f"; XQuAD-R held-out mAP mono {held['mono']}, cross {held['cross']}, multi "
                   f"{held['multi']}" if held else "")
        cmd = r.get("command", "python -m bench.run_all --only demo")
        when = r.get("date_utc", "-")
        if r.get("cold_rc") not in (None, 0):  # a failed cold run: its re-run was no cached re-run
            rows.append((f"demo pipeline wall time (`make demo`), {where}",
                         f"failed after {r['cold_s']} s (see the note below){figures}", "<= 1200 s",
                         "**failed**", when, cmd))
            continue
        rows.append((f"demo pipeline wall time (`make demo`), {where}",
                     (f"{cold} s" if cold else "pending") + figures, "<= 1200 s",
                     _ok(cold, TARGETS["demo_s"], higher=False), when, cmd))
        rows.append((f"demo cached re-run, {where}", f"{cached} s" if cached else "pending",
                     "<= 60 s", _ok(cached, TARGETS["rerun_s"], higher=False), when, cmd))
    return rows


def _grad_cache_rows(gc: dict | None) -> list[tuple]:
    """The two gradient-caching targets (bench/grad_cache.py): peak RSS at the largest cached
    batch <= 1.2x the plain batch 32, at >= 0.7x its pairs/s."""
    cmd = "python -m bench.grad_cache"
    t = (gc or {}).get("targets") or {}
    rss = next((k for k in t if k.endswith("_peak_rss_over_plain_32")), None)
    speed = next((k for k in t if k.endswith("_pairs_per_s_over_plain_32")), None)
    if not (rss and speed):
        return [("gradient caching, me5-small fp32 CPU", "pending", "<= 1.2x RSS, >= 0.7x pairs/s", "pending", "-", cmd)]
    big = rss.split("_")[1]
    when = gc["machine"]["date_utc"]

    def status(ok: str) -> str:  # the targets are stated at batch 512
        return ok if big == "512" else f"pending at 512 ({ok} at {big})"

    return [(f"gradient caching, me5-small fp32 CPU: peak RSS at batch {big} (cached) / batch 32 (plain)",
             f"**{t[rss]}x**", "<= 1.2x at 512", status(_ok(t[rss], 1.2, higher=False)), when, cmd),
            (f"gradient caching: pairs/s at batch {big} (cached) / batch 32 (plain)",
             f"**{t[speed]}x**", ">= 0.7x at 512", status(_ok(t[speed], 0.7)), when, cmd)]


def _gpu_detail(gc: dict | None, before: dict | None) -> list[str]:
    """The GPU check section (bench/gpu_check.py, run on a lent GPU machine; `before`: the
    run before CUDA batches were padded to a multiple of 16 tokens, if recorded)."""
    if not gc or not gc.get("speed"):
        return []
    m = gc["machine"]

    def was(i: int, key: str) -> str:
        old = (before or {}).get("speed") or []
        return f" ({old[i][key]} before)" if i < len(old) and old[i].get(key) != gc["speed"][i].get(key) else ""

    lines = ["", f"## GPU check (`bench/gpu_check.py`, one {m.get('gpu', 'GPU')}, "
             f"{'bf16 autocast' if gc['speed'][0].get('bf16') else 'fp32'}, {gc.get('encoder', '?')}, "
             "word embeddings trained)", "",
             "| global batch | path | pairs/s | peak GPU memory GiB |", "| ---: | --- | ---: | ---: |"]
    for i, r in enumerate(gc["speed"]):
        path = f"cached, chunks of {r['grad_cache_chunk']}" if r.get("grad_cache_chunk") else "plain"
        lines.append(f"| {r['batch_size']} | {path} | {r['pairs_per_s']}{was(i, 'pairs_per_s')} | "
                     f"{r['peak_gpu_memory_gib']} |")
    g, e = gc.get("gradients", {}), gc.get("encode", {})
    old_e = (before or {}).get("encode", {}).get("texts_per_s")
    names = {"fp32": "fp32", "bf16_autocast": "bf16 autocast"}
    rel = {names.get(k, k.replace("fp32_grad_cache_chunk_", "fp32 cached, chunks of ")):
           v["rel_diff_whole_gradient"] for k, v in g.items() if isinstance(v, dict) and "rel_diff_whole_gradient" in v}
    lines += ["", f"`encode` (batch {e.get('batch_size')}): {e.get('texts_per_s')} texts/s"
              + (f" ({old_e} before)" if old_e else "") + f"; the tokenizer alone "
              f"{e.get('tokenize_only_texts_per_s')}. Gradients vs the CPU fp32 path (tiny model), "
              "relative difference of the whole gradient: "
              + ", ".join(f"{k} {v:.1e}" for k, v in rel.items()) + f". Host: {m.get('host_cpu')}; "
              f"torch {m.get('torch')}; {m.get('date')}. \"Before\": `bench/results/gpu_check_unpadded.json`; "
              "why: docs/training.md, \"GPU check\"."]
    return lines


def _grad_cache_detail(gc: dict | None) -> list[str]:
    if not gc or not gc.get("results"):
        return []
    m = gc["machine"]
    lines = ["", f"## Gradient caching (me5-small, fp32, frozen word embeddings, chunk {gc['chunk']}; "
             "each setting a fresh process)", "",
             "| global batch | path | pairs/s | s/step | peak RSS MiB | RSS after load MiB | load avg before/after |",
             "| ---: | --- | ---: | ---: | ---: | ---: | --- |"]
    for r in gc["results"]:
        runs = f" (median of {', '.join(str(x['pairs_per_s']) for x in r['runs'])})" if r.get("runs") else ""
        lines.append(f"| {r['batch_size']} | {r['mode']} | {r['pairs_per_s']}{runs} | {r['median_s_per_step']} | "
                     f"{r['peak_rss_mib']:.0f} | {r['rss_after_load_mib']:.0f} | "
                     f"{r['load_avg_1min_before']} / {r['load_avg_1min_after']} |")
    inter = gc.get("interleaved")
    if inter:
        lines += ["", f"Speed target, one process, in turn ({inter['rounds']} rounds over the same "
                  f"{inter['pairs_each'] // inter['rounds']} pairs, order alternating): plain batch "
                  f"{inter['plain_batch']} {inter['plain_pairs_per_s']} pairs/s, cached batch "
                  f"{inter['cached_batch']} (chunk {inter['chunk']}) {inter['cached_pairs_per_s']} pairs/s: "
                  f"**{inter['ratio']}x**."]
    lines += ["", f"{m.get('cpu_model', '?')} ({', '.join(m.get('cpu_flags', []))}), "
              f"{m.get('torch_threads', '?')} torch threads, {m.get('date_utc', '?')} UTC."]
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(DEFAULT), help="comma-separated: train,encode,eval,demo")
    ap.add_argument("--lock", default=None, help="hold an exclusive flock on this file while timing")
    ap.add_argument("--report-only", action="store_true", help="rebuild BENCHMARKS.md from results only")
    ap.add_argument("--label", default=None,
                    help="demo: how this run differs from a plain one here (shown in its rows)")
    args = ap.parse_args(argv)
    if not args.report_only:
        try:
            import accelerate  # noqa: F401  (SentenceTransformerTrainer needs it)
        except ImportError:
            print('error: the bench extra is missing: pip install -c constraints.txt -e ".[bench]" '
                  "(or run make bench)", file=sys.stderr)
            return 2
        with held(args.lock):
            for name in args.only.split(","):
                print(f"== {name}", flush=True)
                if name == "demo":
                    run_demo(args.label)
                elif subprocess.run(BENCHES[name], cwd=REPO).returncode != 0:
                    print(f"{name}: failed", file=sys.stderr)
                    return 1
    (REPO / "BENCHMARKS.md").write_text(report(), encoding="utf-8")
    print(f"wrote {REPO / 'BENCHMARKS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
