"""ONNX Runtime encoding: the encoder exported once per model, then run without torch.

`OnnxEncoder.from_pretrained(model, int8=False)` gives an object with `BiEncoder.encode`'s
signature and result (float32 rows, L2-normalised, input order) for inference: the same
tokenizer, prefixes, max lengths and length-ordered batches (`hybrid.encoder.EncoderTokenizer`,
`length_order`), with the transformer, pooling and normalisation in one ONNX graph.

- Export (`export_onnx`): traced from the torch encoder with dynamic batch and sequence axes,
  under `cache_dir()/onnx/<weights fingerprint>/<fp32|int8>/` (`model.onnx` + `export.json`
  with its sha256 and the export's check). Built in a temporary directory and swapped in
  whole; a cached export whose file no longer matches its sha256 (or does not load) is
  rebuilt. The fp32 export is checked against torch on texts of mixed lengths (padding
  included) before it is published: min cosine >= `EXACT_COSINE`, else HybridError.
- int8: ONNX Runtime's dynamic quantization of the fp32 export (weights int8, activations
  quantized per batch). Not exact: its cost is measured (docs/model.md), and it is only used
  where asked for (`backend="onnx-int8"`).
- Backends (`BACKENDS`): "torch", "onnx", "onnx-int8"; "auto" (`resolve_backend`) is onnx on
  a CPU-only machine where onnx and onnxruntime are installed, except on an Intel CPU with
  AVX-512 (`torch_fp32_faster`: the only kind where torch's fp32 measured faster), else torch.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hybrid.errors import HybridError
from hybrid.kinds import Kind

BACKENDS = ("torch", "onnx", "onnx-int8")
BACKEND_HELP = ("Encoding backend: auto (the faster exact one: ONNX Runtime fp32 on a CPU-only "
                "machine except Intel with AVX-512, else torch), torch, onnx, or onnx-int8 "
                "(faster, not exact: docs/model.md).")
EXACT_COSINE = 0.9999
OPSET = 17
_CHECK_TEXTS = ["a", "How many languages does the model cover, and which ones?",
                "Die Hauptstadt von Frankreich ist Paris. " * 12, "短い文", "x " * 300]


def onnx_available() -> bool:
    """True when both `onnx` (export) and `onnxruntime` (inference) can be imported."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


def _require() -> None:
    if not onnx_available():
        raise HybridError("--backend onnx: onnx and onnxruntime are not installed "
                          "(pip install onnx onnxruntime), or use --backend torch")


def _cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return f.read(65536)  # the first CPU's lines are enough
    except OSError:
        return ""


def torch_fp32_faster(cpuinfo: str | None = None) -> bool:
    """True where torch's fp32 encoding measured faster than ONNX Runtime's: an Intel CPU
    with AVX-512 (Xeon with AVX-512/AMX: torch 151 vs ONNX Runtime 140 texts/s). Elsewhere ONNX
    Runtime measured faster: AMD EPYC with AVX2 only 1.7x torch, AMD EPYC with AVX-512 1.13x
    (bench/results/encode_backends.json and its earlier machines). `cpuinfo`: the text of
    /proc/cpuinfo (read when None; empty off Linux)."""
    text = _cpuinfo() if cpuinfo is None else cpuinfo
    field = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        field.setdefault(key.strip(), value.strip())
    return field.get("vendor_id") == "GenuineIntel" and "avx512f" in field.get("flags", "").split()


def resolve_backend(backend: str | None = "auto") -> str:
    """`backend` checked; "auto"/None: onnx on a CPU-only machine with onnx and onnxruntime
    installed unless `torch_fp32_faster()`, else torch."""
    backend = backend or "auto"
    if backend == "auto":
        import torch

        fast = onnx_available() and not torch.cuda.is_available() and not torch_fp32_faster()
        return "onnx" if fast else "torch"
    if backend not in BACKENDS:
        raise HybridError(f"--backend: unknown {backend!r} (choose auto, {', '.join(BACKENDS)})")
    if backend != "torch":
        _require()
    return backend


def _pooled_module(encoder):
    """A torch module of `encoder` (a BiEncoder): input_ids, attention_mask -> its
    L2-normalised pooled embeddings, what `BiEncoder.embed` computes."""
    import torch
    import torch.nn.functional as F

    class Pooled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = encoder.model

        def forward(self, input_ids, attention_mask):
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            if encoder.pooling == "cls":
                pooled = hidden[:, 0]
            else:
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return F.normalize(pooled.float(), p=2, dim=-1)

    return Pooled().eval()


def export_dir(model_dir: str | Path, int8: bool = False, cache: str | Path | None = None) -> Path:
    """Where the export of `model_dir` lives (keyed by its weights' fingerprint)."""
    from hybrid.evaluation.encode import model_fingerprint
    from hybrid.paths import cache_dir

    root = Path(cache) if cache is not None else cache_dir() / "onnx"
    return root / model_fingerprint(model_dir)[:16] / ("int8" if int8 else "fp32")


_EXPORTING = threading.RLock()  # the int8 build exports the fp32 model inside it
_CHECKED: dict[tuple, bool] = {}  # (path, size, mtime) -> verdict: each file hashed once per process


def _valid(d: Path) -> bool:
    """`d` holds a model.onnx matching the sha256 in its export.json."""
    from hybrid.hashing import sha256_file

    try:
        meta = json.loads((d / "export.json").read_text(encoding="utf-8"))
        st = (d / "model.onnx").stat()
        key = (str(d), st.st_size, st.st_mtime_ns, meta["sha256"])
        if key not in _CHECKED:
            _CHECKED[key] = meta["sha256"] == sha256_file(d / "model.onnx")
        return _CHECKED[key]
    except (OSError, ValueError, KeyError):
        return False


def export_onnx(model_dir: str | Path, int8: bool = False, cache: str | Path | None = None) -> Path:
    """The ONNX file of `model_dir`'s encoder (fp32, or int8 from the fp32 export), exported
    on first use and cached (see the module docstring); returns the path of model.onnx."""
    from hybrid.io import build_lock
    from hybrid.model import resolve_model

    _require()
    model_dir = resolve_model(model_dir)
    out = export_dir(model_dir, int8, cache)
    if _valid(out):
        return out / "model.onnx"
    # One build per entry across processes and threads (whoever waited finds it built), and
    # one export at a time in this process whatever the model: torch.onnx.export keeps
    # process-global state, and flows encode benchmarks and models in concurrent threads.
    # The process lock first, then the entry's (the int8 build takes the fp32 entry's inside).
    with _EXPORTING, build_lock(out):
        if not _valid(out):
            _build(model_dir, out, int8, cache)
    return out / "model.onnx"


def _build(model_dir: Path, out: Path, int8: bool, cache) -> None:
    from hybrid.io import atomic_path

    if int8:
        source = export_onnx(model_dir, False, cache)
        with atomic_path(out) as tmp:
            tmp.mkdir(parents=True)
            import logging

            from onnxruntime.quantization import QuantType, quantize_dynamic

            root, level = logging.getLogger(), logging.getLogger().level
            root.setLevel(logging.ERROR)  # its advice to pre-process (shape inference) is noise here
            try:
                quantize_dynamic(str(source), str(tmp / "model.onnx"), weight_type=QuantType.QInt8)
            finally:
                root.setLevel(level)
            _seal(tmp, {"from": str(source), "quantization": "dynamic, weights int8"})
        return
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        cosine = _export_fp32(model_dir, tmp / "model.onnx")
        _seal(tmp, {"min_cosine_vs_torch": cosine, "opset": OPSET})


def _seal(d: Path, info: dict) -> None:
    import onnxruntime
    import torch

    from hybrid.hashing import sha256_file
    from hybrid.io import write_json

    write_json(d / "export.json", {"sha256": sha256_file(d / "model.onnx"), "torch": torch.__version__,
                                   "onnxruntime": onnxruntime.__version__, **info})


def _export_fp32(model_dir: Path, path: Path) -> float:
    """Trace the torch encoder into `path`; check it against torch; returns the min cosine."""
    import warnings

    import torch

    from hybrid.encoder import BiEncoder

    enc = BiEncoder.from_pretrained(model_dir).eval()
    sample = enc.tokenize(_CHECK_TEXTS[:2], "passage")
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(_pooled_module(enc), (sample["input_ids"], sample["attention_mask"]), str(path),
                          input_names=["input_ids", "attention_mask"], output_names=["embedding"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                                        "attention_mask": {0: "batch", 1: "tokens"},
                                        "embedding": {0: "batch"}},
                          opset_version=OPSET, dynamo=False)
    ours = OnnxEncoder(path, _tokenizer_of(model_dir), threads=None)
    cosine = 1.0
    for kind in ("query", "passage"):
        a = enc.encode(_CHECK_TEXTS, kind, batch_size=2, show_progress=False)
        b = ours.encode(_CHECK_TEXTS, kind, batch_size=2, show_progress=False)
        cosine = min(cosine, float(np.min(np.sum(a * b, axis=1))))
    if not cosine >= EXACT_COSINE:
        raise HybridError(f"{model_dir}: the ONNX export differs from torch (min cosine "
                          f"{cosine:.6f} < {EXACT_COSINE}); use --backend torch")
    return cosine


def _tokenizer_of(model_dir):
    from hybrid.encoder import EncoderTokenizer

    return EncoderTokenizer.from_pretrained(model_dir)


class OnnxEncoder:
    """`BiEncoder.encode` on ONNX Runtime (inference only): see the module docstring."""

    def __init__(self, path: str | Path, tokenizer, threads: int | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads or 0)  # 0: ONNX Runtime's default (all cores)
        opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise HybridError(f"{path}: ONNX Runtime cannot load it ({type(exc).__name__})") from exc
        self.tok = tokenizer
        self.dim = int(self.session.get_outputs()[0].shape[-1])  # static: the hidden size

    @classmethod
    def from_pretrained(cls, model: str | os.PathLike, int8: bool = False, threads: int | None = None,
                        cache: str | Path | None = None) -> OnnxEncoder:
        """The encoder of `model` (any model spec), exported on first use (`export_onnx`)."""
        path = export_onnx(model, int8=int8, cache=cache)
        try:
            return cls(path, _tokenizer_of(model), threads)
        except HybridError:  # damaged after the check: rebuild once
            import shutil

            shutil.rmtree(path.parent, ignore_errors=True)
            return cls(export_onnx(model, int8=int8, cache=cache), _tokenizer_of(model), threads)

    def encode(self, texts: Sequence[str], kind: Kind, batch_size: int = 64, bf16: bool = False,
               show_progress: bool = True, device=None) -> np.ndarray:
        """float32 rows [n, dim] in input order (`bf16` and `device` are accepted for
        `BiEncoder.encode`'s signature and ignored: ONNX Runtime runs fp32 on the CPU)."""
        from tqdm.auto import tqdm

        from hybrid.encoder import encode_args

        texts, kind = encode_args(texts, kind, batch_size)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        enc, order = self.tok.length_order(texts, kind)
        rows: list[np.ndarray] = []
        bar = tqdm(total=len(texts), desc=f"encode {kind}", unit="text", disable=not show_progress)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            width = max(len(enc["input_ids"][i]) for i in idx)
            ids = np.full((len(idx), width), self.tok.tokenizer.pad_token_id or 0, dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for r, i in enumerate(idx):
                seq = enc["input_ids"][i]
                if self.tok.tokenizer.padding_side == "left":
                    ids[r, width - len(seq):], mask[r, width - len(seq):] = seq, 1
                else:
                    ids[r, :len(seq)], mask[r, :len(seq)] = seq, 1
            rows.append(self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0])
            bar.update(len(idx))
        bar.close()
        out = np.empty((len(texts), rows[0].shape[1]), dtype=np.float32)
        out[np.asarray(order)] = np.concatenate(rows)
        return out


def load_encoder(model: str | os.PathLike, backend: str | None = "auto", threads: int | None = None):
    """An encoder with `BiEncoder.encode`'s signature for `backend` (`resolve_backend`)."""
    backend = resolve_backend(backend)
    if backend == "torch":
        from hybrid.encoder import BiEncoder

        return BiEncoder.from_pretrained(model)
    return OnnxEncoder.from_pretrained(model, int8=backend == "onnx-int8", threads=threads)
