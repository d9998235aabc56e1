"""The bi-encoder: one shared HF encoder for queries and passages.

Inputs: texts and a kind ("query" or "passage"); the kind's prefix ("query: " /
"passage: ") is prepended and the text is truncated to the kind's max length
(64 / 128 tokens by default). Output: mean-pooled (padding masked) or CLS vectors,
L2-normalised, so the score of a query and a passage is their dot product (cosine).

`embed(batch)` is the differentiable path used in training; `encode(texts, kind)` is the
inference path: length-sorted batches padded per batch, `torch.inference_mode`, optional
bf16 autocast, float32 numpy rows in input order. `save(dir)` writes an HF +
sentence-transformers directory that `from_pretrained` and `SentenceTransformer` load.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hybrid.errors import HybridError
from hybrid.io import iter_jsonl
from hybrid.kinds import Kind, check_kind
from hybrid.paths import check_data_path

# Texts per length-sorted chunk in `BiEncoder.embed_texts` on CPU (batch 32: 4 chunks, about 40%
# fewer padded tokens on XQuAD-R than one batch; 6, 11 and 16 were slower: docs/performance.md).
TRAIN_CHUNK_CPU = 8
# On CUDA every batch is padded to a multiple of this many tokens. cuDNN's attention builds
# an execution plan per input shape (~2.4 ms of CPU each on an H200, bench/results/
# gpu_check.json); batches padded to their own longest text have a new shape nearly every
# time, which made gradient caching (many small chunks) 10x slower than the plain step.
# 16 bounds the shapes to max_length / 16 per batch size. On CPU padding costs compute and
# nothing is rounded up.
CUDA_PAD_MULTIPLE = 16
# What `encode` promises across batchings. A text's padded length and its batch's shape depend
# on its batch mates (batch size, chunking of a corpus), and CPU matrix kernels round
# differently for different shapes (AMD EPYC: one float32 ulp of a score; me5-small on an
# Intel Xeon, batch 64 vs 7 vs corpus chunks of 15: scores up to 6.6e-7 apart). So two
# batchings give scores (cosines) within SCORE_ATOL of each other, and rankings equal except
# between items whose scores are that close. The same batches give bit-identical vectors:
# sharded encoding keeps every text's batch, so any shard count gives the same vectors.
SCORE_ATOL = 1e-5
# A fast tokenizer sets truncation and padding on its shared Rust object before each call, so
# two threads calling one tokenizer object with different max lengths (a flow's concurrent
# encodings of queries and passages; tokenizers are shared per process, `load_tokenizer`)
# could tokenize with each other's settings. Every call that truncates takes this lock.
TOKENIZER_LOCK = threading.Lock()


def length_order(tokenizer, texts: Sequence[str], prefix: str,
                 max_length: int) -> tuple[Any, list[int]]:
    """(encoding, order) of `texts`: each prefixed, tokenized and truncated to `max_length`,
    unpadded; `order` lists the indices by token length, longest first, ties in input order.

    The one batching rule of the encoder: `BiEncoder.encode` and `embed_texts` cut `order`
    into batches, and the sharded encoding (`hybrid.evaluation.encode`) cuts the same order
    into shards of whole batches, so every text lands in the same batch whatever the shard
    count, which is what makes the vectors identical for any shard count.
    """
    with TOKENIZER_LOCK:
        enc = tokenizer([prefix + t for t in texts], truncation=True, max_length=max_length,
                        padding=False)
    ids = enc["input_ids"]
    return enc, sorted(range(len(texts)), key=lambda i: -len(ids[i]))  # stable: ties in input order


def encode_args(texts: Sequence[str], kind: Kind, batch_size: int) -> tuple[list[str], Kind]:
    """The checked arguments of an `encode` (`BiEncoder`'s and `OnnxEncoder`'s): the texts as
    a list (a lone string is a TypeError) and the kind; HybridError for a batch size < 1."""
    kind = check_kind(kind)
    if isinstance(texts, str):
        raise TypeError("encode() takes a list of texts, not a single string")
    if batch_size < 1:
        raise HybridError(f"batch_size: must be positive, not {batch_size}")
    return list(texts), kind


@dataclass(frozen=True)
class EncoderTokenizer:
    """An encoder's tokenizer and text settings exactly as `BiEncoder.from_pretrained` loads
    them, without the weights: `path` (the resolved model directory), `tokenizer`, `pooling`,
    `prefixes` and `max_lens` ({"query": ..., "passage": ...}; capped by the model's
    position embeddings)."""

    path: Path
    tokenizer: Any
    pooling: str
    prefixes: dict[str, str]
    max_lens: dict[str, int]

    @classmethod
    def from_pretrained(cls, spec: str | os.PathLike, *, trust_remote_code: bool = False,
                        **overrides) -> EncoderTokenizer:
        """Load from any model spec (`hybrid.model.resolve_model`). `overrides`: any of the
        settings of `BiEncoder.from_pretrained` (`pooling`, `query_prefix`, ...); those left
        out or None come from the directory. Reads the model files' headers
        (`check_model_files`), its config and tokenizer; no weights."""
        from transformers import AutoConfig

        from hybrid.model.check import check_model_files
        from hybrid.model.resolve import resolve_model
        from hybrid.model.st_files import DEFAULTS, read_encoder_settings

        unknown = sorted(set(overrides) - set(DEFAULTS))
        if unknown:
            raise TypeError(f"EncoderTokenizer.from_pretrained: unknown setting(s) {', '.join(unknown)}")
        path = check_model_files(resolve_model(spec), trust_remote_code=trust_remote_code)
        stored = read_encoder_settings(path)
        given = {k: overrides.get(k) for k in DEFAULTS}
        settings = {k: (stored[k] if v is None else v) for k, v in given.items()}
        if settings["pooling"] not in ("mean", "cls"):
            raise HybridError(f"pooling: must be 'mean' or 'cls', not {settings['pooling']!r}")
        tokenizer = load_tokenizer(Path(path), trust_remote_code)
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
        limit = getattr(config, "max_position_embeddings", None)
        if limit:
            offset = 2 if getattr(config, "model_type", "") in ("roberta", "xlm-roberta",
                                                                 "camembert") else 0
            for k in ("max_query_len", "max_passage_len"):
                settings[k] = min(int(settings[k]), int(limit) - offset)
        return cls(Path(path), tokenizer, settings["pooling"],
                   {"query": settings["query_prefix"], "passage": settings["passage_prefix"]},
                   {"query": int(settings["max_query_len"]),
                    "passage": int(settings["max_passage_len"])})

    def length_order(self, texts: Sequence[str], kind: Kind) -> tuple[Any, list[int]]:
        """`length_order` with `kind`'s prefix and max length."""
        kind = check_kind(kind)
        return length_order(self.tokenizer, texts, self.prefixes[kind], self.max_lens[kind])


# Files a tokenizer is not read from: a change to them keeps a cached tokenizer.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".h5", ".msgpack", ".npy")


def load_tokenizer(path: Path, trust_remote_code: bool = False):
    """`AutoTokenizer.from_pretrained(path)`, loaded once per process while the directory's
    non-weight files are unchanged (name, inode, size and mtime of each are the cache key).
    Loading the 250k-piece multilingual tokenizer costs ~2 s (a Python parse of its
    tokenizer.json in transformers, then the Rust one), and a model directory is opened
    several times per process (length order, then the encoder). The object is shared by
    the callers: nothing in hybrid changes a tokenizer's settings (truncation and padding are
    per call, under `TOKENIZER_LOCK`)."""
    files = []
    for f in sorted(Path(path).iterdir()):
        if f.is_file() and not f.name.endswith(WEIGHT_SUFFIXES):
            st = f.stat()
            files.append((f.name, st.st_ino, st.st_size, st.st_mtime_ns))
    return _cached_tokenizer(str(path), trust_remote_code, tuple(files))


@functools.lru_cache(maxsize=4)
def _cached_tokenizer(path: str, trust_remote_code: bool, files: tuple):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)


def _load_automodel(path: Path, trust_remote_code: bool):
    """AutoModel from safetensors, without BERT's pooler head where the class has one
    (an unused pooler breaks DDP's gradient bookkeeping)."""
    from transformers import AutoModel

    kw = {"use_safetensors": True, "trust_remote_code": trust_remote_code}
    try:
        return AutoModel.from_pretrained(path, add_pooling_layer=False, **kw)
    except TypeError:
        return AutoModel.from_pretrained(path, **kw)


class BiEncoder(torch.nn.Module):
    """Shared-weights dual encoder with prefixes, mean/CLS pooling and L2 normalisation.

    Attributes: `model` (HF AutoModel), `tokenizer`, `pooling` ("mean" or "cls"),
    `prefixes` ({"query": ..., "passage": ...}), `max_lens` ({"query": ..., "passage": ...}).
    """

    def __init__(self, model, tokenizer, pooling: str = "mean",
                 query_prefix: str = "query: ", passage_prefix: str = "passage: ",
                 max_query_len: int = 64, max_passage_len: int = 128):
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise HybridError(f"pooling: must be 'mean' or 'cls', not {pooling!r}")
        for name, n in (("max_query_len", max_query_len), ("max_passage_len", max_passage_len)):
            if int(n) < 3:
                raise HybridError(f"{name}: must be at least 3 tokens, not {n}")
        self.model = model
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.prefixes = {"query": query_prefix, "passage": passage_prefix}
        self.max_lens = {"query": int(max_query_len), "passage": int(max_passage_len)}

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        spec: str | os.PathLike,
        pooling: str | None = None,
        query_prefix: str | None = None,
        passage_prefix: str | None = None,
        max_query_len: int | None = None,
        max_passage_len: int | None = None,
        trust_remote_code: bool = False,
    ) -> BiEncoder:
        """Load from any model spec (`hybrid.model.resolve_model`). Settings left as None
        come from the directory (`hybrid_encoder.json`, then the sentence-transformers
        pooling config and prompts), else mean pooling, "query: "/"passage: ", 64/128."""
        tok = EncoderTokenizer.from_pretrained(
            spec, pooling=pooling, query_prefix=query_prefix, passage_prefix=passage_prefix,
            max_query_len=max_query_len, max_passage_len=max_passage_len,
            trust_remote_code=trust_remote_code)
        model = _load_automodel(tok.path, trust_remote_code)
        return cls(model, tok.tokenizer, tok.pooling,
                   query_prefix=tok.prefixes["query"], passage_prefix=tok.prefixes["passage"],
                   max_query_len=tok.max_lens["query"], max_passage_len=tok.max_lens["passage"])

    # ---------------------------------------------------------------- properties
    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def pad_multiple(self) -> int | None:
        """Batches are padded to a multiple of this many tokens (`CUDA_PAD_MULTIPLE` on
        CUDA, None elsewhere)."""
        return CUDA_PAD_MULTIPLE if self.device.type == "cuda" else None

    # ------------------------------------------------------------------ forward
    def length_order(self, texts: Sequence[str], kind: Kind) -> tuple[Any, list[int]]:
        """`length_order` with `kind`'s prefix and max length (the order of `encode`)."""
        kind = check_kind(kind)
        return length_order(self.tokenizer, texts, self.prefixes[kind], self.max_lens[kind])

    def tokenize(self, texts: Sequence[str], kind: Kind) -> dict[str, torch.Tensor]:
        """Prefix, truncate to the kind's max length and pad to the longest text."""
        kind = check_kind(kind)
        if isinstance(texts, str):
            raise TypeError("tokenize() takes a list of texts, not a single string")
        prefix = self.prefixes[kind]
        with TOKENIZER_LOCK:
            return dict(self.tokenizer([prefix + t for t in texts], padding=True, truncation=True,
                                       max_length=self.max_lens[kind], return_tensors="pt",
                                       pad_to_multiple_of=self.pad_multiple))

    def embed(self, batch: dict[str, torch.Tensor],
              inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """L2-normalised embeddings [batch, dim] of a tokenized batch (differentiable).

        `inputs_embeds`: the batch's word embeddings [batch, tokens, hidden], looked up by the
        caller, used instead of its `input_ids` (see `embed_texts`).
        """
        dev = self.device
        batch = {k: v.to(dev) for k, v in batch.items()}
        if inputs_embeds is not None:
            batch = {k: v for k, v in batch.items() if k != "input_ids"}
            batch["inputs_embeds"] = inputs_embeds
        hidden = self.model(**batch).last_hidden_state
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return F.normalize(pooled.float(), p=2, dim=-1)

    forward = embed

    def embed_texts(self, texts: Sequence[str], kind: Kind, chunk: int | None = None) -> torch.Tensor:
        """Differentiable embeddings [len(texts), dim] of `texts` in input order (training).

        The texts are sorted by token length and embedded in chunks of `chunk` texts, each
        padded to its own longest text, instead of one batch padded to the longest of all:
        the vectors are the same (padding is masked), the padded tokens fewer. Default
        `chunk`: `TRAIN_CHUNK_CPU` on CPU (where compute grows with padded tokens), the whole
        batch elsewhere (on a GPU small chunks cost more than padding). Where the model can
        run packed (CPU training: `hybrid.train.packing.supported`), the texts are one row
        without any padding instead and `chunk` texts share an attention block (unless
        `chunk` >= the number of texts: one padded batch, as asked). The same as
        `embed_tokenized(tokenize_chunks(texts, kind, chunk))`.
        """
        return self.embed_tokenized(self.tokenize_chunks(texts, kind, chunk))

    def tokenize_chunks(self, texts: Sequence[str], kind: Kind, chunk: int | None = None):
        """The tokenized input of `embed_texts` (to embed the same texts twice, as gradient
        caching does, with one tokenization): a `hybrid.train.packing.Packed` batch, or
        (padded chunks, their length order or None for a single unsorted batch, the number
        of texts)."""
        kind = check_kind(kind)
        texts = list(texts)
        n = len(texts)
        cpu = self.device.type == "cpu"
        if n > 1 and cpu and (chunk is None or chunk < n) and self._packs():
            from hybrid.train import packing

            enc, order = self.length_order(texts, kind)
            return packing.pack(self.model, enc["input_ids"], order, min(chunk or TRAIN_CHUNK_CPU, n))
        if chunk is None:
            chunk = TRAIN_CHUNK_CPU if cpu else n
        if n == 0:
            return [], None, 0
        if chunk >= n:
            return [self.tokenize(texts, kind)], None, n
        # Tokenized once, unpadded; each chunk is then padded to its own longest text.
        enc, order = self.length_order(texts, kind)
        batches = [dict(self.tokenizer.pad({k: [enc[k][i] for i in order[s:s + chunk]] for k in enc.keys()},
                                           return_tensors="pt", pad_to_multiple_of=self.pad_multiple))
                   for s in range(0, n, chunk)]
        return batches, order, n

    def _packs(self) -> bool:
        """Whether the model runs packed batches (only after `hybrid.train.dropout` set its
        attention, so inference never imports the training package)."""
        if not str(getattr(self.model.config, "_attn_implementation", "")).startswith("hybrid"):
            return False
        from hybrid.train import packing

        return packing.supported(self.model)

    def embed_tokenized(self, chunks) -> torch.Tensor:
        """Differentiable embeddings [n, dim] in input order of `tokenize_chunks` output."""
        if not isinstance(chunks, tuple):
            from hybrid.train import packing

            return packing.embed(self, chunks)
        batches, order, n = chunks
        if n == 0:
            return torch.zeros(0, self.dim, device=self.device)
        if order is None:
            return self.embed(batches[0])
        words = self.model.get_input_embeddings()
        if words.weight.requires_grad:
            # One lookup for all chunks: the backward of each lookup writes a dense
            # [vocab, hidden] gradient (96 M values for mE5), so per-chunk lookups cost one
            # such tensor per chunk (profiled: +0.9 s per step for 8 chunks on 2 cores).
            ids = [b["input_ids"].to(self.device) for b in batches]
            flat = words(torch.cat([x.flatten() for x in ids]))
            embeds = flat.split([x.numel() for x in ids])
            parts = [self.embed(b, e.view(*x.shape, -1)) for b, e, x in zip(batches, embeds, ids, strict=True)]
        else:
            parts = [self.embed(b) for b in batches]
        inverse = torch.empty(n, dtype=torch.long)
        inverse[torch.tensor(order)] = torch.arange(n)
        return torch.cat(parts)[inverse.to(parts[0].device)]

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], kind: Kind, batch_size: int = 64,
               bf16: bool = False, show_progress: bool = True,
               device: str | torch.device | None = None) -> np.ndarray:
        """Embed `texts` as float32 rows [n, dim] in input order.

        Texts are sorted by token length (longest first) and padded per batch, so padding
        costs little; `bf16` runs under bfloat16 autocast (CPU or CUDA). Another batch size
        or split of the texts gives scores within `SCORE_ATOL` (see there).
        """
        from tqdm.auto import tqdm

        texts, kind = encode_args(texts, kind, batch_size)
        if device is not None:
            self.to(device)
        dev = self.device
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        enc, order = self.length_order(texts, kind)
        was_training = self.model.training
        if was_training:  # a no-op walk over every module otherwise (~4 ms a call on CPU)
            self.model.eval()
        try:
            bar = tqdm(total=len(texts), desc=f"encode {kind}", unit="text",
                       disable=not show_progress)
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                feats = [{k: enc[k][i] for k in enc.keys()} for i in idx]
                batch = self.tokenizer.pad(feats, padding=True, return_tensors="pt",
                                           pad_to_multiple_of=self.pad_multiple)
                with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=bf16):
                    emb = self.embed(dict(batch))
                out[idx] = emb.float().cpu().numpy()
                bar.update(len(idx))
            bar.close()
        finally:
            if was_training:
                self.model.train()
        return out

    # --------------------------------------------------------------- training aid
    def freeze_word_embeddings(self) -> None:
        """Stop gradients to the word-embedding matrix (most of mE5-small's parameters)."""
        self.model.get_input_embeddings().weight.requires_grad_(False)

    # ------------------------------------------------------------------- saving
    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write HF weights (safetensors), tokenizer and sentence-transformers files to
        `out_dir`, atomically."""
        from hybrid.io import atomic_path
        from hybrid.model.st_files import write_st_files

        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise HybridError(f"{out}: exists and is not a directory")
        with atomic_path(out) as tmp:
            tmp.mkdir()
            self.model.save_pretrained(tmp, safe_serialization=True)
            self.tokenizer.save_pretrained(tmp)
            max_seq = int(getattr(self.tokenizer, "model_max_length", 512) or 512)
            write_st_files(
                tmp, dim=self.dim, pooling=self.pooling,
                query_prefix=self.prefixes["query"], passage_prefix=self.prefixes["passage"],
                max_seq_length=min(max_seq, 512) if max_seq < 10**6 else 512,
                max_query_len=self.max_lens["query"], max_passage_len=self.max_lens["passage"],
                drop_pooler=getattr(self.model, "pooler", 0) is None,
            )
        return out


# ---------------------------------------------------------------- file helpers
def read_texts(path: str | os.PathLike, column: str = "text") -> list[str]:
    """Texts from `.txt` (one per line, every line kept, so row i is line i + 1), `.jsonl`
    (objects with `column`) or `.parquet` (string column `column`). An empty input, an empty
    or blank text, or a file that is not UTF-8 is a HybridError naming the file (and line)."""
    p = check_data_path(path, what="--input")
    if p.is_dir():
        raise HybridError(f"--input {p}: is a directory (expected a file)")
    if not p.is_file():
        raise HybridError(f"--input {p}: no such file")
    suffix = p.suffix.lower()
    if suffix == ".txt":
        try:
            texts = p.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise HybridError(f"--input {p}: not UTF-8 text (byte {exc.start})") from None
        where = "line"
    elif suffix == ".jsonl":
        texts = []
        for n, obj in iter_jsonl(p):
            if not isinstance(obj, dict) or not isinstance(obj.get(column), str):
                raise HybridError(f"{p}:{n}: expected an object with a string {column!r}")
            if not obj[column].strip():
                raise HybridError(f"{p}:{n}: empty text in {column!r}")
            texts.append(obj[column])
        where = "line"
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(p)
        except Exception as exc:
            raise HybridError(f"{p}: cannot read Parquet ({str(exc).splitlines()[0]})") from exc
        if column not in table.column_names:
            raise HybridError(f"{p}: no column {column!r} (columns: "
                              f"{', '.join(table.column_names)})")
        texts = table.column(column).to_pylist()
        bad = next((i for i, v in enumerate(texts) if not isinstance(v, str)), None)
        if bad is not None:
            raise HybridError(f"{p}: row {bad} of column {column!r} is not a string")
        where = "row"
    else:
        raise HybridError(f"--input {p}: unsupported input type {suffix or '(none)'} "
                          "(expected .txt, .jsonl or .parquet)")
    if not texts:
        raise HybridError(f"--input {p}: no texts")
    blank = next((i for i, t in enumerate(texts) if not t.strip()), None)
    if blank is not None:
        n = blank if where == "row" else blank + 1
        raise HybridError(f"--input {p}: {where} {n} is an empty text (every {where} is "
                          f"embedded; remove it)")
    return texts


def read_langs(path: str | os.PathLike, n: int) -> list[str | None] | None:
    """The `lang` field of each of the `n` rows of a .jsonl or .parquet input read by
    `read_texts` (None entries where a row has none), None for a .txt file or an input
    without that field; a code that is not a language is a HybridError."""
    from hybrid.langs import validate_lang

    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        langs = [obj.get("lang") if isinstance(obj, dict) else None for _, obj in iter_jsonl(p)]
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        if "lang" not in pq.read_schema(p).names:
            return None
        langs = pq.read_table(p, columns=["lang"]).column("lang").to_pylist()
    else:
        return None
    if len(langs) != n or not any(langs):
        return None
    for i, x in enumerate(langs):
        if x is not None:
            validate_lang(x, where=f"{p} row {i + 1} lang")
    return langs


def write_embeddings(path: str | os.PathLike, emb: np.ndarray) -> Path:
    """Write embeddings atomically: `.npy` (float32 [n, d]) or `.parquet` (columns `row`,
    the input position, and `embedding`, a fixed-size list of float32)."""
    from hybrid.io import atomic_path, write_parquet

    p = Path(path)
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    suffix = p.suffix.lower()
    if suffix == ".npy":
        with atomic_path(p) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, emb)
        return p
    if suffix == ".parquet":
        import pyarrow as pa

        values = pa.array(emb.reshape(-1), type=pa.float32())
        col = pa.FixedSizeListArray.from_arrays(values, emb.shape[1])
        table = pa.table({"row": pa.array(np.arange(len(emb), dtype=np.int64)),
                          "embedding": col})
        return write_parquet(p, table)
    raise HybridError(f"{p}: unsupported output type {suffix or '(none)'} "
                      "(expected .npy or .parquet)")
