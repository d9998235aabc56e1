"""The sentence-transformers files of a model directory, written and read in one place.

A model directory the tool produces (`hybrid model materialize`, `make_tiny_model`,
`BiEncoder.save`) is a plain HF directory (config.json, model.safetensors, tokenizer) plus:

- `modules.json`: Transformer -> 1_Pooling -> 2_Normalize (the classic layout, which every
  sentence-transformers release since 2.x loads);
- `sentence_bert_config.json`: `max_seq_length`, and `model_args` so the HF model is built
  without BERT's unused pooler head;
- `1_Pooling/config.json` (mean or CLS), `2_Normalize/` (empty);
- `config_sentence_transformers.json`: prompts {"query": ..., "passage": ...}, cosine;
- `hybrid_encoder.json`: this tool's own settings (pooling, prefixes, per-kind max lengths),
  read back by `BiEncoder.from_pretrained`.

So `SentenceTransformer(DIR).encode(texts, prompt_name="query")` equals
`BiEncoder.from_pretrained(DIR).encode(texts, "query")` up to the max length.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hybrid.kinds import KINDS

POOLINGS = ("mean", "cls")
ENCODER_FILE = "hybrid_encoder.json"
DEFAULTS: dict[str, Any] = {
    "pooling": "mean",
    "query_prefix": "query: ",
    "passage_prefix": "passage: ",
    "max_query_len": 64,
    "max_passage_len": 128,
}


def _dump(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_st_files(
    model_dir: str | Path,
    *,
    dim: int,
    pooling: str = "mean",
    query_prefix: str = "query: ",
    passage_prefix: str = "passage: ",
    max_seq_length: int = 512,
    max_query_len: int = 64,
    max_passage_len: int = 128,
    drop_pooler: bool = True,
) -> None:
    """Write the sentence-transformers and `hybrid_encoder.json` files into `model_dir`.

    `model_dir` is a directory being built (callers wrap the whole directory in
    `hybrid.io.atomic_path`). `drop_pooler` records `add_pooling_layer=False` for
    BERT-like models whose checkpoint has no pooler.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, not {pooling!r}")
    d = Path(model_dir)
    _dump(d / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize",
         "type": "sentence_transformers.models.Normalize"},
    ])
    sbert: dict[str, Any] = {"max_seq_length": int(max_seq_length), "do_lower_case": False}
    if drop_pooler:
        sbert["model_args"] = {"add_pooling_layer": False}
    _dump(d / "sentence_bert_config.json", sbert)
    _dump(d / "1_Pooling" / "config.json", {
        "word_embedding_dimension": int(dim),
        "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean",
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False,
        "include_prompt": True,
    })
    (d / "2_Normalize").mkdir(parents=True, exist_ok=True)
    _dump(d / "config_sentence_transformers.json", {
        "prompts": {"query": query_prefix, "passage": passage_prefix},
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    })
    _dump(d / ENCODER_FILE, {
        "pooling": pooling,
        "query_prefix": query_prefix,
        "passage_prefix": passage_prefix,
        "max_query_len": int(max_query_len),
        "max_passage_len": int(max_passage_len),
    })


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def read_encoder_settings(model_dir: str | Path) -> dict[str, Any]:
    """The encoder settings stored in `model_dir`, falling back to the sentence-transformers
    files (pooling, prompts) and then to `DEFAULTS` for plain HF directories."""
    d = Path(model_dir)
    out = dict(DEFAULTS)
    pool = _read(d / "1_Pooling" / "config.json")
    if pool.get("pooling_mode_cls_token") or pool.get("pooling_mode") == "cls":
        out["pooling"] = "cls"
    prompts = _read(d / "config_sentence_transformers.json").get("prompts") or {}
    for kind in KINDS:
        if isinstance(prompts.get(kind), str):
            out[f"{kind}_prefix"] = prompts[kind]
    own = _read(d / ENCODER_FILE)
    out.update({k: v for k, v in own.items() if k in DEFAULTS})
    return out
