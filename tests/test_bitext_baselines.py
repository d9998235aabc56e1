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


def test_training_starts_from_a_baselines_settings(tiny, tmp_path):
    """`hybrid train` on a known baseline: the trainer's model dir is the overlay, and the
    encoder the training loop builds from it (config prefixes/pooling None) has the
    baseline's CLS pooling and no prefixes; a directory this tool wrote keeps its own."""
    import pandas as pd

    from hybrid.data.pairs import write_pairs
    from hybrid.train import load_profile
    from hybrid.train.trainer import precheck

    rows = [{"dataset": "toy", "xling_id": f"id{i}", "lang": lg, "question": f"{lg} q {i}",
             "positive": f"{lg} a {i}", "context": None, "hard_negatives": []}
            for i in range(40) for lg in ("en", "de")]
    write_pairs(pd.DataFrame(rows), tmp_path / "pairs", {"source": "test"})
    labse = hf_cache_dir(tiny, tmp_path, "sentence-transformers/LaBSE")

    def start(model) -> BiEncoder:
        cfg = load_profile("tiny").override(**{"model.model": str(model), "out": str(tmp_path / "o"),
                                               "data.pairs": str(tmp_path / "pairs")})
        m = cfg.model  # as hybrid.train.loop builds the encoder
        return BiEncoder.from_pretrained(precheck(cfg), pooling=m.pooling, query_prefix=m.query_prefix,
                                         passage_prefix=m.passage_prefix)

    enc = start(labse)
    assert enc.pooling == "cls" and enc.prefixes == {"query": "", "passage": ""}
    own = start(tiny)
    assert own.pooling == "mean" and own.prefixes == {"query": "query: ", "passage": "passage: "}
