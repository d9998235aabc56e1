"""The tiny test model: deterministic, and loadable everywhere the real one is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hybrid.encoder import BiEncoder
from hybrid.model import make_tiny_model, resolve_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("m") / "tiny", seed=0)


def test_same_seed_same_bytes_other_seed_differs(tiny, tmp_path):
    again = make_tiny_model(tmp_path / "again", seed=0)
    other = make_tiny_model(tmp_path / "other", seed=1)
    weights = (tiny / "model.safetensors").read_bytes()
    assert (again / "model.safetensors").read_bytes() == weights
    assert (other / "model.safetensors").read_bytes() != weights


def test_loads_via_resolver_biencoder_and_sentence_transformers(tiny):
    from sentence_transformers import SentenceTransformer

    enc = BiEncoder.from_pretrained(str(tiny))
    assert resolve_model(str(tiny)) == tiny.resolve()
    assert enc.dim == 32 and enc.pooling == "mean"
    assert enc.model.config.vocab_size == 250037 and enc.tokenizer.pad_token_id == 1
    texts = ["a short one", "Москва — столица России.", "東京は日本の首都です。"]
    ours = enc.encode(texts, "query", show_progress=False)
    st = SentenceTransformer(str(tiny), device="cpu").encode(texts, prompt_name="query")
    np.testing.assert_allclose(ours, st, atol=1e-5)
