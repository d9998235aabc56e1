"""Packed training batches (hybrid.train.packing): the same vectors and gradients as padded
chunks, the input order kept, dropout still applied, and only where it applies."""

from __future__ import annotations

import copy

import pytest
import torch

from hybrid.encoder import BiEncoder
from hybrid.model import make_tiny_model
from hybrid.train import packing
from hybrid.train.core import prepare_encoder

TEXTS = ["short", "a much longer sentence with a good many words, so the others are padded",
         "x y z", "Москва — столица России.", "another text of middling length here",
         "one", "deux mots", "a sentence of some eleven tokens or so in all"]


@pytest.fixture(scope="module")
def enc(tmp_path_factory) -> BiEncoder:
    return BiEncoder.from_pretrained(make_tiny_model(tmp_path_factory.mktemp("m") / "tiny"))


def _training(enc: BiEncoder, pooling: str = "mean", freeze: bool = False) -> BiEncoder:
    e = BiEncoder(copy.deepcopy(enc.model), enc.tokenizer, pooling=pooling)
    return prepare_encoder(e, torch.device("cpu"), freeze=freeze)


def _grads(e: BiEncoder, fn) -> dict[str, torch.Tensor]:
    e.model.zero_grad(set_to_none=True)
    emb = fn()
    w = torch.linspace(-1, 1, emb.numel()).view_as(emb)
    (emb * w).sum().backward()
    return {n: p.grad.clone() for n, p in e.model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("pooling", ["mean", "cls"])
@pytest.mark.parametrize("chunk", [1, 3, None])
def test_packed_vectors_equal_one_padded_batch_in_input_order(enc, pooling, chunk):
    e = _training(enc, pooling)
    e.eval()  # no dropout: both paths are deterministic
    tokens = e.tokenize_chunks(TEXTS, "passage", chunk)
    assert isinstance(tokens, packing.Packed)
    assert tokens.input_ids.shape == (1, sum(tokens.lengths))  # no padding at all
    got = e.embed_tokenized(tokens)
    ref = e.embed_texts(TEXTS, "passage", chunk=len(TEXTS))  # one padded batch, as asked
    assert got.shape == ref.shape
    assert torch.allclose(got, ref, atol=1e-6)
    # each row is its own text's: the single texts embedded alone agree
    for i in (0, 1, 5):
        alone = e.embed_texts([TEXTS[i]], "passage")
        assert torch.allclose(got[i], alone[0], atol=1e-6)


@pytest.mark.parametrize("freeze", [False, True])
def test_packed_gradients_equal_the_padded_batch(enc, freeze):
    e = _training(enc, freeze=freeze)
    e.eval()
    packed = _grads(e, lambda: e.embed_texts(TEXTS, "query"))
    padded = _grads(e, lambda: e.embed_texts(TEXTS, "query", chunk=len(TEXTS)))
    assert packed.keys() == padded.keys() and packed
    assert ("embeddings.word_embeddings.weight" in packed) is not freeze
    for name in packed:
        assert torch.allclose(packed[name], padded[name], atol=1e-5, rtol=1e-4), name


def test_packed_training_applies_dropout_reproducibly(enc):
    e = _training(enc)
    e.eval()
    ref = e.embed_texts(TEXTS, "passage")
    e.train()
    torch.manual_seed(3)
    a = e.embed_texts(TEXTS, "passage")
    torch.manual_seed(3)
    b = e.embed_texts(TEXTS, "passage")
    assert torch.equal(a, b) and not torch.allclose(a, ref, atol=1e-3)


def test_models_without_the_training_attention_are_not_packed(enc):
    plain = BiEncoder(copy.deepcopy(enc.model), enc.tokenizer)  # inference: SDPA
    assert not packing.supported(plain.model)
    batches, order, n = plain.tokenize_chunks(TEXTS, "passage", 3)
    assert n == len(TEXTS) and len(batches) == 3 and sorted(order) == list(range(n))
    e = _training(enc)
    assert packing.supported(e.model)
    e.model.config.position_embedding_type = "relative_key"  # positions it cannot write
    assert not packing.supported(e.model)
    assert isinstance(e.tokenize_chunks(TEXTS, "passage", 3), tuple)


def test_xlm_roberta_positions_start_after_the_padding_index(enc, tmp_path):
    from transformers import XLMRobertaConfig, XLMRobertaModel

    cfg = XLMRobertaConfig(vocab_size=enc.tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                           num_attention_heads=4, intermediate_size=64, max_position_embeddings=80,
                           pad_token_id=1)
    torch.manual_seed(0)
    model = XLMRobertaModel(cfg, add_pooling_layer=False)
    e = prepare_encoder(BiEncoder(model, enc.tokenizer), torch.device("cpu"), freeze=False)
    e.eval()
    packed = e.tokenize_chunks(TEXTS, "passage", 3)
    assert isinstance(packed, packing.Packed) and int(packed.position_ids.min()) == 2
    assert torch.allclose(e.embed_tokenized(packed), e.embed_texts(TEXTS, "passage", chunk=len(TEXTS)),
                          atol=1e-6)


def test_pack_blocks_gather_each_text_and_mask_the_rest(enc):
    ids = [[5, 6], [7, 8, 9, 10, 11], [12], [13, 14, 15]]
    order = [1, 3, 0, 2]  # longest first
    p = packing.pack(enc.model, ids, order, chunk=3)
    assert p.input_ids.tolist() == [[7, 8, 9, 10, 11, 13, 14, 15, 5, 6, 12]]
    assert p.position_ids.tolist() == [[0, 1, 2, 3, 4, 0, 1, 2, 0, 1, 0]]
    assert p.lengths == [5, 3, 2, 1] and p.order == order
    (i1, v1), (i2, v2) = p.blocks
    assert v1.tolist() == [[True] * 5, [True] * 3 + [False] * 2, [True] * 2 + [False] * 3]
    assert p.input_ids[0, i1[v1]].tolist() == [7, 8, 9, 10, 11, 13, 14, 15, 5, 6]
    assert i2.tolist() == [[10]] and v2.tolist() == [[True]]
