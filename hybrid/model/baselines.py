"""Known baseline encoders: the pooling and prefixes each was trained with.

A plain HF directory says nothing about how its vectors are pooled or which prefixes its
inputs had; `BiEncoder` then falls back to mean pooling and the e5 prefixes, which is right
for multilingual-e5 and wrong for, e.g., LaBSE (CLS, no prefixes). This table says it:

| HF id | pooling | query / passage prefix | note |
| --- | --- | --- | --- |
| intfloat/multilingual-e5-small, -base, -large | mean | `query: ` / `passage: ` | the paper's starting model family |
| sentence-transformers/LaBSE | cls | none | ST's LaBSE adds a Dense+tanh layer after CLS; the BiEncoder has none (fine-tuning starts from the raw CLS vector) |
| FacebookAI/xlm-roberta-base, -large (xlm-roberta-base, -large) | mean | none | not trained for similarity |
| microsoft/mdeberta-v3-base | mean | none | not trained for similarity; needs its `spm.model` tokenizer file |
| microsoft/Multilingual-MiniLM-L12-H384 | mean | none | not trained for similarity |
| sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2 | mean | none | |
| sentence-transformers/paraphrase-multilingual-mpnet-base-v2 | mean | none | |
| BAAI/bge-m3 | cls | none | dense vectors only |

`with_baseline_settings(spec)`: for a spec in the table (an HF id, or a Hugging Face cache
directory `.../models--org--name/snapshots/...`) whose directory has no
`hybrid_encoder.json` (a model this tool wrote keeps its own settings), returns an overlay
directory under `hybrid.paths.cache_dir()/baselines/` that links the model's files and adds
the tool's encoder files (`write_st_files`) with the table's pooling and prefixes, so
`resolve_model`, `BiEncoder`, `encode_texts` and `SentenceTransformer` all load it with the
right settings. Any other spec is returned unchanged.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from hybrid.io import atomic_path


@dataclass(frozen=True)
class Baseline:
    pooling: str
    query_prefix: str = ""
    passage_prefix: str = ""


_E5 = Baseline("mean", "query: ", "passage: ")
_MEAN = Baseline("mean")
BASELINES: dict[str, Baseline] = {
    "intfloat/multilingual-e5-small": _E5,
    "intfloat/multilingual-e5-base": _E5,
    "intfloat/multilingual-e5-large": _E5,
    "sentence-transformers/LaBSE": Baseline("cls"),
    "FacebookAI/xlm-roberta-base": _MEAN,
    "FacebookAI/xlm-roberta-large": _MEAN,
    "xlm-roberta-base": _MEAN,
    "xlm-roberta-large": _MEAN,
    "microsoft/mdeberta-v3-base": _MEAN,
    "microsoft/Multilingual-MiniLM-L12-H384": _MEAN,
    "sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2": _MEAN,
    "sentence-transformers/paraphrase-multilingual-mpnet-base-v2": _MEAN,
    "BAAI/bge-m3": Baseline("cls"),
}
# Files the overlay writes itself (never linked from the model directory).
_OWN = {"modules.json", "sentence_bert_config.json", "config_sentence_transformers.json",
        "hybrid_encoder.json", "1_Pooling", "2_Normalize", "2_Dense"}
_CACHE_NAME = re.compile(r"models--([^/]+)")


def baseline_id(spec) -> str | None:
    """The table's id for `spec` (an HF id, or a path inside an HF cache entry), or None."""
    raw = str(spec).strip()
    if raw in BASELINES:
        return raw
    m = _CACHE_NAME.search(Path(raw).as_posix())
    name = m.group(1).replace("--", "/", 1) if m else None
    return name if name in BASELINES else None


def with_baseline_settings(spec):
    """`spec`, or an overlay directory carrying the table's settings (module docstring)."""
    from hybrid.model.resolve import resolve_model
    from hybrid.model.st_files import write_st_files
    from hybrid.paths import cache_dir

    name = baseline_id(spec)
    if name is None:
        return spec
    src = resolve_model(spec)
    if (src / "hybrid_encoder.json").is_file():
        return src
    b = BASELINES[name]
    key = hashlib.sha256(f"{src.resolve()}|{b}".encode()).hexdigest()[:12]
    overlay = cache_dir() / "baselines" / f"{name.replace('/', '--')}-{key}"
    if (overlay / "hybrid_encoder.json").is_file():
        return overlay
    config = json.loads((src / "config.json").read_text(encoding="utf-8"))
    with atomic_path(overlay) as tmp:
        tmp.mkdir()
        for p in src.iterdir():
            if p.name not in _OWN:
                (tmp / p.name).symlink_to(p.resolve())
        write_st_files(tmp, dim=int(config["hidden_size"]), pooling=b.pooling,
                       query_prefix=b.query_prefix, passage_prefix=b.passage_prefix,
                       drop_pooler=config.get("model_type") in ("bert", "roberta", "xlm-roberta"))
    return overlay


def checked_model_dir(spec) -> Path:
    """`spec`'s local directory with a known baseline's settings (`with_baseline_settings`), its
    config, tokenizer and weight files checked (`hybrid.model.check.check_model_files`): what a
    training starts from, and its distillation teacher."""
    from hybrid.model.check import check_model_files
    from hybrid.model.resolve import resolve_model

    if baseline_id(spec):  # the overlay reads the model's config.json: check the files first
        check_model_files(resolve_model(spec))
    return check_model_files(resolve_model(with_baseline_settings(spec)))
