"""hybrid.train.dropout: mask statistics, the swapped modules and attention on the tiny model."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from hybrid.encoder import BiEncoder
from hybrid.model import make_tiny_model
from hybrid.train.core import prepare_encoder
from hybrid.train.dropout import ATTENTION, FastDropout, fast_dropout, keep_mask, use_fast_dropout

TEXTS = ["short", "a much longer sentence with a good many words, so the others are padded",
         "x y z", "Москва — столица России."]


@pytest.fixture(scope="module")
def enc(tmp_path_factory) -> BiEncoder:
    return BiEncoder.from_pretrained(make_tiny_model(tmp_path_factory.mktemp("m") / "tiny"))


def _copy(enc: BiEncoder) -> BiEncoder:
    return BiEncoder(copy.deepcopy(enc.model), enc.tokenizer)


def _set_dropout(enc: BiEncoder, hidden: float, attention: float) -> None:
    for name, m in enc.model.named_modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = attention if name.endswith("attention.self.dropout") else hidden


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_keep_mask_drops_p_in_every_16_bit_lane(p):
    torch.manual_seed(0)
    m = keep_mask((1000, 4000), p)
    assert m.shape == (1000, 4000) and m.dtype == torch.bool
    lanes = (~m).flatten().view(-1, 4).float().mean(0)  # each 64-bit draw gives 4 lanes
    assert torch.allclose(lanes, torch.full((4,), p), atol=3e-3), lanes
    # neighbouring elements are independent: P(both dropped) = p^2
    pairs = (~m).flatten().view(-1, 2)
    assert abs((pairs[:, 0] & pairs[:, 1]).float().mean().item() - p * p) < 3e-3


def test_fast_dropout_scales_kept_values_and_follows_the_seed():
    x = torch.randn(64, 257, requires_grad=True)
    torch.manual_seed(3)
    y = fast_dropout(x, 0.25)
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] / 0.75)
    torch.manual_seed(3)
    assert torch.equal(fast_dropout(x, 0.25), y)
    y.sum().backward()  # gradient: 1 / (1 - p) where kept, 0 where dropped
    assert torch.allclose(x.grad, kept.float() / 0.75)
    assert fast_dropout(x, 0.0) is x and not fast_dropout(x, 1.0).any()


def test_use_fast_dropout_swaps_modules_and_attention_but_not_the_saved_config(enc, tmp_path):
    e = _copy(enc)
    n = sum(type(m) is torch.nn.Dropout for m in e.model.modules())
    assert use_fast_dropout(e.model) == n > 0
    assert not any(type(m) is torch.nn.Dropout for m in e.model.modules())
    assert all(isinstance(m, FastDropout) for m in e.model.modules() if isinstance(m, torch.nn.Dropout))
    assert e.model.config._attn_implementation == ATTENTION
    e.save(tmp_path / "saved")
    assert ATTENTION not in (tmp_path / "saved" / "config.json").read_text()
    assert "hybrid" not in json.dumps(json.loads((tmp_path / "saved" / "config.json").read_text()))
    assert BiEncoder.from_pretrained(tmp_path / "saved").model.config._attn_implementation == "sdpa"


def test_evaluation_and_training_without_drops_match_the_standard_model(enc):
    ref = enc.embed_texts(TEXTS, "passage", chunk=len(TEXTS)).detach()
    fast = prepare_encoder(_copy(enc), torch.device("cpu"), freeze=False)
    fast.eval()
    # one padded batch: SDPA, no masks, the same vectors; packed (the default here): within rounding
    assert torch.equal(fast.embed_texts(TEXTS, "passage", chunk=len(TEXTS)).detach(), ref)
    assert torch.allclose(fast.embed_texts(TEXTS, "passage").detach(), ref, atol=1e-6)
    # training mode with p below 2^-17 keeps every element: the masked-softmax path over the
    # padded batch must give the SDPA result
    _set_dropout(fast, 1e-6, 1e-6)
    fast.train()
    got = fast.embed_texts(TEXTS, "passage", chunk=len(TEXTS)).detach()
    assert torch.allclose(got, ref, atol=1e-5)


def test_attention_dropout_is_applied_in_training(enc):
    fast = prepare_encoder(_copy(enc), torch.device("cpu"), freeze=False)
    _set_dropout(fast, 0.0, 0.5)  # only the attention probabilities are dropped
    fast.eval()
    ref = fast.embed_texts(TEXTS, "query").detach()
    fast.train()
    torch.manual_seed(1)
    a = fast.embed_texts(TEXTS, "query").detach()
    torch.manual_seed(1)
    b = fast.embed_texts(TEXTS, "query").detach()
    assert torch.equal(a, b) and not torch.allclose(a, ref, atol=1e-3)
