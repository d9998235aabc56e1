"""BiEncoder behaviour on the tiny model: prefixes, truncation, pooling, order, saving."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hybrid.encoder import BiEncoder
from hybrid.errors import HybridError
from hybrid.model import make_tiny_model

TEXTS = [
    "short",
    "A considerably longer sentence about the history of the river Danube and its bridges.",
    "Москва — столица России.",
    "東京は日本の首都です。",
    "يعتبر نهر النيل أطول نهر في العالم.",
    "two words",
    "Η Αθήνα είναι η πρωτεύουσα της Ελλάδας, μια πόλη με μεγάλη ιστορία.",
    "x",
    "กรุงเทพมหานครเป็นเมืองหลวงของประเทศไทย",
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("m") / "tiny")


@pytest.fixture(scope="module")
def enc(tiny) -> BiEncoder:
    return BiEncoder.from_pretrained(tiny)


def _variant(enc: BiEncoder, **kw) -> BiEncoder:
    """Another BiEncoder over a copy of the same weights (no reload)."""
    return BiEncoder(copy.deepcopy(enc.model), enc.tokenizer, **kw)


def test_tokenize_adds_prefix_and_truncates(enc):
    enc = _variant(enc, max_query_len=8, max_passage_len=12)
    q = enc.tokenize([TEXTS[1], "hi"], "query")
    p = enc.tokenize([TEXTS[1]], "passage")
    assert q["input_ids"].shape == (2, 8) and p["input_ids"].shape == (1, 12)
    assert enc.tokenizer.decode(q["input_ids"][1], skip_special_tokens=True) == "query: hi"
    assert enc.tokenizer.decode(p["input_ids"][0], skip_special_tokens=True).startswith("passage: A")
    assert q["input_ids"][0, -1].item() == enc.tokenizer.eos_token_id
    assert q["attention_mask"][1].sum().item() < 8  # padded, not truncated
    with pytest.raises(HybridError, match="kind"):
        enc.tokenize(["a"], "document")


def test_encode_is_normalised_and_in_input_order(enc):
    full = enc.encode(TEXTS, "passage", batch_size=64, show_progress=False)
    assert full.shape == (len(TEXTS), enc.dim) and full.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(full, axis=1), 1.0, atol=1e-5)
    perm = np.random.default_rng(0).permutation(len(TEXTS))
    shuffled = enc.encode([TEXTS[i] for i in perm], "passage", batch_size=2, show_progress=False)
    np.testing.assert_allclose(shuffled, full[perm], atol=1e-5)
    one_by_one = np.stack([enc.encode([t], "passage", show_progress=False)[0] for t in TEXTS])
    np.testing.assert_allclose(one_by_one, full, atol=1e-5)  # padding is masked
    assert enc.encode([], "query").shape == (0, enc.dim)


def test_query_and_passage_prefixes_differ(enc):
    q = enc.encode(TEXTS[:3], "query", show_progress=False)
    p = enc.encode(TEXTS[:3], "passage", show_progress=False)
    assert not np.allclose(q, p, atol=1e-3)


def test_embed_is_differentiable_and_matches_encode(enc):
    enc.model.eval()
    batch = enc.tokenize(TEXTS[:4], "query")
    emb = enc.embed(batch)
    np.testing.assert_allclose(emb.detach().numpy(),
                               enc.encode(TEXTS[:4], "query", show_progress=False), atol=1e-5)
    emb.sum().backward()
    grads = {n: p.grad for n, p in enc.model.named_parameters()}
    assert all(g is not None for g in grads.values())
    enc.model.zero_grad(set_to_none=True)


def test_cls_pooling_takes_the_first_token(enc, tiny):
    enc = _variant(enc, pooling="cls")
    batch = enc.tokenize(TEXTS[:3], "query")
    with torch.no_grad():
        hidden = enc.model(**batch).last_hidden_state[:, 0]
        got = enc.embed(batch)
    torch.testing.assert_close(got, torch.nn.functional.normalize(hidden, dim=-1))
    with pytest.raises(HybridError, match="pooling"):
        BiEncoder.from_pretrained(tiny, pooling="max")


def test_freeze_word_embeddings(enc):
    enc = _variant(enc)
    enc.freeze_word_embeddings()
    enc.embed(enc.tokenize(["frozen words"], "query")).sum().backward()
    word = enc.model.get_input_embeddings().weight
    assert not word.requires_grad and word.grad is None
    assert enc.model.encoder.layer[0].attention.self.query.weight.grad is not None


def test_save_load_round_trip(enc, tmp_path):
    original = enc.encode(TEXTS, "query", show_progress=False)
    enc = _variant(enc, pooling="cls", query_prefix="q: ", passage_prefix="p: ",
                   max_query_len=16, max_passage_len=24)
    with torch.no_grad():
        enc.model.encoder.layer[0].output.dense.bias.add_(0.5)  # "trained"
    before = enc.encode(TEXTS, "query", show_progress=False)
    assert not np.allclose(before, original, atol=1e-3)
    out = enc.save(tmp_path / "saved")
    assert {"model.safetensors", "config.json", "tokenizer.json", "modules.json",
            "sentence_bert_config.json"} <= {p.name for p in out.iterdir()}
    assert not list(out.glob("*.bin"))
    assert json.loads((out / "1_Pooling" / "config.json").read_text())["pooling_mode_cls_token"]
    back = BiEncoder.from_pretrained(out)
    assert (back.pooling, back.prefixes, back.max_lens) == (
        "cls", {"query": "q: ", "passage": "p: "}, {"query": 16, "passage": 24})
    np.testing.assert_allclose(back.encode(TEXTS, "query", show_progress=False), before,
                               atol=1e-6)


def test_saved_dir_loads_in_sentence_transformers(enc, tmp_path):
    from sentence_transformers import SentenceTransformer

    out = enc.save(tmp_path / "st")
    st = SentenceTransformer(str(out), device="cpu")
    np.testing.assert_allclose(st.encode(TEXTS, prompt_name="passage"),
                               enc.encode(TEXTS, "passage", show_progress=False), atol=1e-5)


def test_save_refuses_a_file_path(enc, tmp_path):
    target = tmp_path / "file"
    target.write_text("keep")
    with pytest.raises(HybridError, match="not a directory"):
        enc.save(target)
    assert target.read_text() == "keep"


def test_embed_texts_in_chunks_equals_one_padded_batch(enc):
    """The training step's length-sorted chunks give the one-batch vectors in input order,
    and gradients reach the encoder through every chunk."""
    texts = ["short", "a much longer passage " * 6, "mid length text here", "x",
             "another fairly long sentence about rivers and mountains", "zz zz"]
    whole = enc.embed(enc.tokenize(texts, "passage"))
    for chunk in (1, 2, 4):
        got = enc.embed_texts(texts, "passage", chunk=chunk)
        assert got.shape == whole.shape
        assert torch.allclose(got, whole, atol=1e-5), chunk
    # Gradients: chunks (one word-embedding lookup for all of them) == one padded batch,
    # with the word embeddings trained and with them frozen.
    weights = torch.randn(len(texts), enc.dim, generator=torch.Generator().manual_seed(0))
    for frozen in (False, True):
        enc.model.get_input_embeddings().weight.requires_grad_(not frozen)
        grads = {}
        for name, fn in (("whole", lambda: enc.embed(enc.tokenize(texts, "passage"))),
                         ("chunks", lambda: enc.embed_texts(texts, "passage", chunk=2))):
            enc.model.zero_grad(set_to_none=True)
            (fn() * weights).sum().backward()
            grads[name] = {n: p.grad.clone() for n, p in enc.model.named_parameters() if p.grad is not None}
        assert grads["chunks"].keys() == grads["whole"].keys()
        word = "word_embeddings.weight"
        assert any(n.endswith(word) for n in grads["whole"]) is not frozen
        for n, g in grads["whole"].items():
            assert torch.allclose(grads["chunks"][n], g, atol=1e-5), (frozen, n)
    enc.model.get_input_embeddings().weight.requires_grad_(True)
    enc.model.zero_grad(set_to_none=True)
    assert enc.embed_texts([], "query").shape == (0, enc.dim)


class _Padded(BiEncoder):
    """The CUDA padding rule on CPU: every batch padded to a multiple of 16 tokens."""

    pad_multiple = 16


def test_padding_to_a_multiple_changes_shapes_not_vectors(enc):
    """On CUDA batches are padded to `CUDA_PAD_MULTIPLE` tokens (bounded shapes for cuDNN's
    attention plans): every path pads to the multiple and the vectors stay those of the
    batch padded to its longest text, in training (chunked or not) and in `encode`."""
    from hybrid.encoder import CUDA_PAD_MULTIPLE

    assert enc.pad_multiple is None and CUDA_PAD_MULTIPLE == 16
    padded = _Padded(enc.model, enc.tokenizer)
    toks = padded.tokenize(TEXTS, "passage")
    assert toks["input_ids"].shape[1] % 16 == 0
    assert toks["input_ids"].shape[1] > enc.tokenize(TEXTS, "passage")["input_ids"].shape[1]
    batches, order, n = padded.tokenize_chunks(TEXTS, "passage", chunk=4)
    assert n == len(TEXTS) and sorted(order) == list(range(n))
    assert all(b["input_ids"].shape[1] % 16 == 0 for b in batches)
    with torch.no_grad():
        for chunk in (None, 4, len(TEXTS)):
            want = enc.embed_texts(TEXTS, "passage", chunk=chunk)
            got = padded.embed_texts(TEXTS, "passage", chunk=chunk)
            assert torch.allclose(got, want, atol=1e-5), chunk
    np.testing.assert_allclose(padded.encode(TEXTS, "query", batch_size=3, show_progress=False),
                               enc.encode(TEXTS, "query", batch_size=3, show_progress=False), atol=1e-5)


def test_tokenizer_is_loaded_once_until_its_files_change(tmp_path):
    """Two loads of one directory share the tokenizer; a changed tokenizer file (here its
    model_max_length) or another directory loads anew; a changed weights file does not."""
    from hybrid.encoder import load_tokenizer

    d = make_tiny_model(tmp_path / "m", seed=0)
    first = load_tokenizer(d)
    assert load_tokenizer(d) is first and BiEncoder.from_pretrained(d).tokenizer is first
    (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes())
    assert load_tokenizer(d) is first
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    cfg["model_max_length"] = 77
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    changed = load_tokenizer(d)
    assert changed is not first and changed.model_max_length == 77 and first.model_max_length == 512
    other = make_tiny_model(tmp_path / "o", seed=0)
    assert load_tokenizer(other) is not changed
