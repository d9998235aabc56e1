"""Dropout with cheaper random masks, for training on CPU.

`nn.Dropout`'s masks are slow on CPU: `bernoulli_` costs ~10 ns per element on the 2-core
development machine (13 ms for the 1.6 M attention probabilities of 8 passages of 128
tokens), 50x the multiply that applies the mask; in a training step of mE5-small (hidden
and attention-probability dropout in 12 layers) masks were ~20 % of the step
(docs/performance.md). Here a mask takes 64-bit draws from torch's generator
(`torch.randint`, so `torch.manual_seed` makes it reproducible) and reads each as four 16-bit
uniform numbers: one draw per 4 elements, ~2.5x cheaper per mask including its application.
An element is kept when its number is at least `round(p * 65536)` above the minimum, so the
drop probability is `p` to within 2^-17 (0.1 -> 0.100006); kept elements are scaled by
1 / (1 - p), as `nn.Dropout` does.

`use_fast_dropout(model)` swaps an HF model's `nn.Dropout` modules for `FastDropout` and its
attention (when it is SDPA, the default) for `attention`, which is SDPA when dropout is off
(evaluation) and otherwise scores -> softmax -> fast dropout -> values, as HF's eager path.
Neither change touches weights or the saved config; on CUDA (Philox masks, fused kernels)
the standard modules are faster and are kept.
"""

from __future__ import annotations

import torch
from torch import nn

ATTENTION = "hybrid_fast_dropout_sdpa"
_INT64 = (-(2**63), 2**63 - 1)


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, device=None) -> torch.Tensor:
    """Bool tensor of `shape`, each element True with probability 1 - p (to within 2^-17)."""
    n = 1
    for s in shape:
        n *= int(s)
    draws = torch.randint(*_INT64, ((n + 3) // 4,), dtype=torch.int64, device=device)
    threshold = round(p * 65536) - 32768
    return (draws.view(torch.int16)[:n] >= threshold).view(shape)


def fast_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """`F.dropout(x, p, training=True)` with a `keep_mask` (differentiable)."""
    if p <= 0:
        return x
    if p >= 1:
        return torch.zeros_like(x)
    # x * (mask scaled in x's dtype): one pass each way (torch.where was ~30 % slower)
    return x * keep_mask(x.shape, p, x.device).to(x.dtype).mul_(1.0 / (1.0 - p))


class FastDropout(nn.Dropout):
    """`nn.Dropout` whose training-mode masks come from `keep_mask`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        return fast_dropout(x, self.p)


def attention(module, query, key, value, attention_mask, dropout: float = 0.0,
              scaling: float | None = None, **kwargs):
    """HF attention-interface function: bidirectional attention with `fast_dropout` on the
    attention probabilities; a packed batch's (`hybrid.train.packing`) per text; anything
    else (no dropout, causal, biases, soft-capping) is SDPA's."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from hybrid.train.packing import KWARG
    from hybrid.train.packing import attention as packed_attention

    if kwargs.get(KWARG) is not None:  # a packed batch: each text attends to itself only
        return packed_attention(query, key, value, kwargs[KWARG], dropout, scaling), None
    plain = (not kwargs.get("is_causal", getattr(module, "is_causal", False))
             and kwargs.get("position_bias") is None and kwargs.get("softcap") is None
             and getattr(module, "num_key_value_groups", 1) == 1)
    if not dropout or not plain:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:  # SDPA's convention: True = attend
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    probs = fast_dropout(torch.softmax(scores, dim=-1), dropout)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), None


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION, attention)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)  # the same masks SDPA gets


def use_fast_dropout(model: nn.Module) -> int:
    """Swap `model`'s `nn.Dropout` modules for `FastDropout` and, if it runs SDPA attention
    through HF's attention interface, its attention for `attention`. Returns the number of
    dropout modules swapped."""
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                setattr(parent, name, FastDropout(child.p, child.inplace))
                swapped += 1
    config = getattr(model, "config", None)
    if getattr(config, "_attn_implementation", None) == "sdpa" and model._can_set_attn_implementation():
        _register()
        model.set_attn_implementation(ATTENTION)
    return swapped
