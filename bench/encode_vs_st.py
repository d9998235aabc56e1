"""Benchmark: encoding texts/s of each backend (`hybrid.encoder.BiEncoder.encode` on torch,
`hybrid.onnx_encoder.OnnxEncoder` fp32 and int8) vs `SentenceTransformer.encode`, on XQuAD-R
questions and candidates.

    python -m bench.encode_vs_st [--model me5-small] [--n 2000] [--batch-size 64] [--rounds 2]
        [--bf16] [--tools ours,st,onnx,onnx-int8] [--threads N]

Texts: a fixed sample (numpy seed 0) of `--n` questions and `--n` candidate sentences of the
whole XQuAD-R benchmark (all 11 languages), the texts `hybrid evaluate` encodes. Both sides:
same model directory, same batch size, `query: `/`passage: ` prefixes, questions truncated at
64 and candidates at 128 tokens (ST: `max_seq_length` set per kind), fp32 (`--bf16`: both under
bfloat16 autocast), length-sorted batches (both sort), no progress bar, torch's default
threads. Each (tool, round) runs in its own subprocess, interleaved ours, ST, ours, ST; after
loading, one warm-up batch per kind is encoded, then each kind is timed over all its texts
(tokenization included). The best round counts (the machine is shared; the best is the
least disturbed). Every tool's embeddings are compared with torch's ("ours": minimum cosine).
The ONNX exports are made (and cached) before the timed rounds. `--threads`: torch's and ONNX
Runtime's intra-op threads (default: torch's default). The result records the CPU model and
flags (`bench.common.machine`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import RESULTS, machine, run_worker, with_earlier_machines, write_worker_result

MODULE = "bench.encode_vs_st"
MAX_LEN = {"query": 64, "passage": 128}


def sample_texts(n: int) -> dict[str, list[str]]:
    from hybrid.evaluation import load_eval_benchmark
    from hybrid.paths import default_data_dir

    b = load_eval_benchmark("xquad-r", default_data_dir() / "lareqa" / "xquad-r")
    rng = np.random.default_rng(0)
    q = b.questions["text"].tolist()
    c = b.candidates["sentence"].tolist()
    return {"query": [q[i] for i in sorted(rng.choice(len(q), n, replace=False))],
            "passage": [c[i] for i in sorted(rng.choice(len(c), n, replace=False))]}


def worker(spec_path: str, out_path: str) -> None:
    import torch

    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    texts = sample_texts(spec["n"])
    bs, bf16 = spec["batch_size"], spec["bf16"]
    if spec["tool"] in ("onnx", "onnx-int8"):
        from hybrid.onnx_encoder import OnnxEncoder

        onnx = OnnxEncoder.from_pretrained(spec["model_path"], int8=spec["tool"] == "onnx-int8",
                                           threads=spec.get("threads") or torch.get_num_threads())

        def encode(kind, xs):
            return onnx.encode(xs, kind, batch_size=bs, show_progress=False)
    elif spec["tool"] == "ours":
        from hybrid.encoder import BiEncoder

        enc = BiEncoder.from_pretrained(spec["model_path"])

        def encode(kind, xs):
            return enc.encode(xs, kind, batch_size=bs, bf16=bf16, show_progress=False)
    else:
        from sentence_transformers import SentenceTransformer

        st = SentenceTransformer(spec["model_path"], device="cpu")
        prompts = {"query": "query: ", "passage": "passage: "}

        def encode(kind, xs):
            st.max_seq_length = MAX_LEN[kind]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                return np.asarray(st.encode(xs, prompt=prompts[kind], batch_size=bs,
                                            convert_to_numpy=True, show_progress_bar=False), dtype=np.float32)
    result = {"seconds": {}, "texts_per_s": {}}
    for kind in ("query", "passage"):
        encode(kind, texts[kind][:bs])  # warm-up
        t0 = time.perf_counter()
        emb = encode(kind, texts[kind])
        dt = time.perf_counter() - t0
        result["seconds"][kind] = round(dt, 3)
        result["texts_per_s"][kind] = round(len(texts[kind]) / dt, 2)
        np.save(Path(spec["emb_dir"]) / f"{spec['tool']}-{kind}.npy", emb)
    total = sum(len(texts[k]) for k in texts)
    result["texts_per_s"]["all"] = round(total / sum(result["seconds"].values()), 2)
    write_worker_result(out_path, result)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", nargs=2, metavar=("SPEC", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--model", default="me5-small")
    ap.add_argument("--n", type=int, default=2000, help="questions and candidates each")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--tools", default="ours,st,onnx,onnx-int8")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=str(RESULTS / "encode_backends.json"))
    args = ap.parse_args(argv)
    if args.worker:
        worker(*args.worker)
        return 0

    from hybrid.io import write_json
    from hybrid.model import resolve_model

    model_path = str(resolve_model(args.model))
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    for t in tools:
        if t.startswith("onnx"):
            from hybrid.onnx_encoder import export_onnx

            export_onnx(model_path, int8=t == "onnx-int8")  # not timed
    mach = machine()
    runs: dict[str, list[dict]] = {t: [] for t in tools}
    with tempfile.TemporaryDirectory(prefix="bench-enc-") as emb_dir:
        for rnd in range(args.rounds):
            for tool in tools:
                r = run_worker(MODULE, {"tool": tool, "model_path": model_path, "n": args.n,
                                        "batch_size": args.batch_size, "bf16": args.bf16,
                                        "emb_dir": emb_dir, "threads": args.threads})
                runs[tool].append(r)
                print(f"round {rnd + 1}: {tool:4s} {r['texts_per_s']} texts/s, "
                      f"peak RSS {r['peak_rss_mib']:.0f} MiB", flush=True)
        min_cos = {}  # each tool vs torch ("ours")
        for tool in tools:
            if tool != "ours" and "ours" in tools:
                min_cos[tool] = {k: round(float(np.min(np.sum(
                    np.load(Path(emb_dir) / f"ours-{k}.npy") * np.load(Path(emb_dir) / f"{tool}-{k}.npy"),
                    axis=1))), 6) for k in ("query", "passage")}
    best = {tool: max(rs, key=lambda r: r["texts_per_s"]["all"]) for tool, rs in runs.items()}
    result = {"bench": "encode_vs_st", "model": args.model, "texts": {"query": args.n, "passage": args.n},
              "batch_size": args.batch_size, "precision": "bf16" if args.bf16 else "fp32",
              "threads": args.threads or mach["torch_threads"],
              "max_len": MAX_LEN, "rounds": args.rounds, "machine": mach,
              **{t: {"best": best[t], "runs": runs[t]} for t in tools},
              "min_cosine_vs_torch": min_cos}
    if "st" in tools:
        st = best["st"]["texts_per_s"]
        result["ratio_vs_st"] = {t: round(best[t]["texts_per_s"]["all"] / st["all"], 2) for t in tools}
        result["ratio_vs_st_by_kind"] = {t: {k: round(best[t]["texts_per_s"][k] / st[k], 2)
                                             for k in ("query", "passage")} for t in tools}
    result["machine"]["load_avg_1min_after"] = machine()["load_avg_1min"]
    write_json(args.out, with_earlier_machines(args.out, result))
    print("; ".join(f"{t} {best[t]['texts_per_s']['all']} texts/s" for t in tools)
          + f"; vs ST {result.get('ratio_vs_st')}; min cosine vs torch {min_cos}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
