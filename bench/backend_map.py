"""Benchmark: the retrieval cost of each encoding backend, XQuAD-R held-out mAP (mono, cross,
multi) and language bias of one model encoded with torch, ONNX Runtime fp32 and ONNX Runtime
int8 (`hybrid evaluate --backend ...`), with each run's encoding wall time.

    python -m bench.backend_map [--model me5-small] [--backends torch,onnx,onnx-int8]

Each backend encodes into its own embedding cache entry (nothing is shared between them); the
ONNX exports are made before the timed evaluations. Results: bench/results/backend_map.json
with the CPU model and flags (`bench.common.machine`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from bench.common import RESULTS, machine, with_earlier_machines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="me5-small")
    ap.add_argument("--backends", default="torch,onnx,onnx-int8")
    ap.add_argument("--out", default=str(RESULTS / "backend_map.json"))
    args = ap.parse_args(argv)

    from hybrid.evaluation.benchmarks import run_benchmark
    from hybrid.io import write_json
    from hybrid.model import resolve_model
    from hybrid.onnx_encoder import export_onnx
    from hybrid.paths import default_data_dir

    model_dir = resolve_model(args.model)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for b in backends:
        if b != "torch":
            export_onnx(model_dir, int8=b == "onnx-int8")
    source = default_data_dir() / "lareqa" / "xquad-r"
    rows = {}
    with tempfile.TemporaryDirectory(prefix="bench-backend-map-") as tmp:
        for b in backends:
            m = run_benchmark("xquad-r", model_dir, Path(tmp) / b, source=source, split="heldout",
                              backend=b, cache=Path(tmp) / "cache")
            s = m["summary"]
            rows[b] = {"map": {k: round(s[k]["map"], 4) for k in ("mono", "cross", "multi")},
                       "language_bias": round(s["language_bias"], 1),
                       "encode_s": m["meta"]["seconds"]["encode"],
                       "texts": m["meta"]["questions"] + m["meta"]["candidates"]}
            print(b, rows[b], flush=True)
    base = rows.get("torch") or rows[backends[0]]
    result = {"bench": "backend_map", "model": args.model, "benchmark": "xquad-r held-out",
              "machine": machine(), "backends": rows,
              "map_delta_vs_torch": {b: {k: round(r["map"][k] - base["map"][k], 4) for k in r["map"]}
                                     for b, r in rows.items()}}
    write_json(args.out, with_earlier_machines(args.out, result))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
