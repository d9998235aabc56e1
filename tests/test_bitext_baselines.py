"""Baseline encoders (hybrid.model.baselines): a plain HF directory of a known id gets its
pooling and prefixes (evaluated with them: tests/test_bitext.py)."""

import shutil

import numpy as np
import pytest
import torch

from hybrid.encoder import BiEncoder
from hybrid.model import make_tiny_model
from hybrid.model.baselines import baseline_id, with_baseline_settings

PLAIN = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny")


def hf_cache_dir(tiny, root, repo):
    """The tiny model's HF files only, where the Hugging Face cache would put `repo`."""
    d = root / f"models--{repo.replace('/', '--')}" / "snapshots" / "0123abc"
    d.mkdir(parents=True)
    for name in PLAIN:
        shutil.copy(tiny / name, d / name)
    return d


def test_known_ids_get_their_pooling_and_prefixes(tiny, tmp_path):
    labse = hf_cache_dir(tiny, tmp_path, "sentence-transformers/LaBSE")
    assert baseline_id(labse) == "sentence-transformers/LaBSE"
    assert BiEncoder.from_pretrained(labse).pooling == "mean"  # a plain dir: the defaults
    overlay = with_baseline_settings(str(labse))
    assert with_baseline_settings(str(labse)) == overlay  # built once
    enc = BiEncoder.from_pretrained(overlay)
    assert enc.pooling == "cls" and enc.prefixes == {"query": "", "passage": ""}
    texts = ["Wie alt ist das Universum?", "Tom needs water"]
    with torch.inference_mode():
        batch = enc.tokenizer(texts, padding=True, return_tensors="pt")
        cls = enc.model(**batch).last_hidden_state[:, 0]
    expected = torch.nn.functional.normalize(cls, dim=-1).numpy()
    assert np.allclose(enc.encode(texts, "query", show_progress=False), expected, atol=1e-5)

    xlmr = BiEncoder.from_pretrained(with_baseline_settings(hf_cache_dir(tiny, tmp_path, "xlm-roberta-base")))
    assert xlmr.pooling == "mean" and xlmr.prefixes["passage"] == ""
    e5 = BiEncoder.from_pretrained(with_baseline_settings(
        hf_cache_dir(tiny, tmp_path, "intfloat/multilingual-e5-base")))
    assert e5.prefixes == {"query": "query: ", "passage": "passage: "}
    # unknown models and directories this tool wrote keep their own settings
    assert with_baseline_settings("me5-small") == "me5-small"
    assert with_baseline_settings(str(tiny)) == str(tiny)
