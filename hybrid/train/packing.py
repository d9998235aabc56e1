"""Packed batches for training on CPU: a batch's texts in one row of tokens, no padding.

On CPU a training step's cost follows the tokens its matrix products see. Length-sorted
chunks of 8 texts, each padded to its longest, still padded XQuAD-R batches of 32 pairs to
2,919 tokens for 2,414 real ones (+21 %), and called the model once per chunk. Packed, the
texts are concatenated into one row of input ids with each text's own position ids, so every
linear layer, layer norm, GELU and dropout runs on the real tokens only, in one model call
(larger matrix products, fewer operator calls). Only attention needs the texts apart:
`attention` (reached through `hybrid.train.dropout`'s attention function, which the packed
call passes a `Packed` to) gathers each block of `chunk` consecutive texts (length-sorted,
so a block's texts are of similar length) into a padded [chunk, heads, longest, head_dim]
tensor, masks the padded keys, and returns the real tokens in packed order.

`supported(model)`: packing needs that attention function (installed on CPU by
`hybrid.train.dropout.use_fast_dropout`, i.e. in training) and absolute position ids it can
write (`POSITION_OFFSET`: BERT counts from 0, XLM-R / RoBERTa from padding_idx + 1). The
vectors equal those of the padded chunks up to float rounding (tests/test_packing.py);
`BiEncoder.tokenize_chunks` / `embed_tokenized` use it whenever it applies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

#: model_type -> offset of the first position id (others: not packed).
POSITION_OFFSET = {"bert": 0, "xlm-roberta": None, "roberta": None}  # None: padding_idx + 1
KWARG = "hybrid_packed"  # the keyword the packed model call passes down to attention


@dataclass
class Packed:
    """A tokenized batch packed into one row. `input_ids`, `position_ids`: [1, tokens];
    `lengths`: each text's tokens in packed order (longest first); `order`: the input index
    of each packed text; `blocks`: per attention block, (gather index [texts, longest] into
    the row, its validity mask), padded positions pointing at the text's last token."""

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    lengths: list[int]
    order: list[int]
    blocks: list[tuple[torch.Tensor, torch.Tensor]] = field(repr=False)

    @property
    def n(self) -> int:
        return len(self.lengths)

    def to(self, device) -> Packed:
        return Packed(self.input_ids.to(device), self.position_ids.to(device), self.lengths,
                      self.order, [(i.to(device), v.to(device)) for i, v in self.blocks])


def _offset(model) -> int | None:
    config = model.config
    if config.model_type not in POSITION_OFFSET:
        return None
    if getattr(config, "position_embedding_type", "absolute") != "absolute":
        return None
    off = POSITION_OFFSET[config.model_type]
    return int(config.pad_token_id) + 1 if off is None else off


def supported(model) -> bool:
    """Whether `model` can run packed: `hybrid.train.dropout`'s attention installed and
    absolute position ids of a known offset."""
    from hybrid.train.dropout import ATTENTION

    return (getattr(model.config, "_attn_implementation", None) == ATTENTION
            and _offset(model) is not None)


def pack(model, input_ids: list[list[int]], order: list[int], chunk: int) -> Packed:
    """Pack the tokenized texts `input_ids` (unpadded) in `order` (longest first), with
    attention blocks of `chunk` texts."""
    off = _offset(model)
    lengths = [len(input_ids[i]) for i in order]
    ids = torch.tensor([t for i in order for t in input_ids[i]], dtype=torch.long)
    pos = torch.cat([torch.arange(n) for n in lengths]) + off
    starts = torch.tensor([0, *lengths[:-1]]).cumsum(0)
    blocks = []
    for s in range(0, len(lengths), chunk):
        ls = torch.tensor(lengths[s:s + chunk])
        t = torch.arange(int(ls.max()))
        valid = t[None, :] < ls[:, None]
        index = starts[s:s + chunk, None] + torch.minimum(t[None, :], ls[:, None] - 1)
        blocks.append((index, valid))
    return Packed(ids[None], pos[None], lengths, list(order), blocks)


def attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, packed: Packed,
              dropout: float, scaling: float | None) -> torch.Tensor:
    """Bidirectional attention of each text with itself over the packed row: `query`, `key`,
    `value` [1, heads, tokens, head_dim] -> [1, tokens, heads, head_dim], dropout `dropout`
    on the probabilities (`hybrid.train.dropout.fast_dropout`)."""
    from hybrid.train.dropout import fast_dropout

    if scaling is None:
        scaling = query.size(-1) ** -0.5
    q, k, v = query[0], key[0], value[0]
    out = []
    for index, valid in packed.blocks:
        scores = torch.matmul(q[:, index], k[:, index].transpose(-1, -2)) * scaling  # [h, b, L, L]
        scores = scores.masked_fill(~valid[None, :, None, :], torch.finfo(scores.dtype).min)
        probs = fast_dropout(torch.softmax(scores, dim=-1), dropout)
        block = torch.matmul(probs, v[:, index])  # [h, b, L, d]
        out.append(block.permute(1, 2, 0, 3)[valid])  # real tokens, packed order: [t, h, d]
    return torch.cat(out)[None]


def embed(encoder, packed: Packed) -> torch.Tensor:
    """L2-normalised embeddings [n, dim] in input order of a packed batch (differentiable),
    pooled as `encoder.pooling` says."""
    dev = encoder.device
    p = packed.to(dev)
    hidden = encoder.model(input_ids=p.input_ids, position_ids=p.position_ids,
                           **{KWARG: p}).last_hidden_state[0]
    lengths = torch.tensor(p.lengths, device=dev)
    if encoder.pooling == "cls":
        pooled = hidden[lengths.cumsum(0) - lengths]
    else:
        text = torch.repeat_interleave(torch.arange(p.n, device=dev), lengths)
        pooled = hidden.new_zeros(p.n, hidden.size(-1)).index_add_(0, text, hidden)
        pooled = pooled / lengths[:, None].to(hidden.dtype)
    inverse = torch.empty(p.n, dtype=torch.long)
    inverse[torch.tensor(p.order)] = torch.arange(p.n)
    return F.normalize(pooled.float(), p=2, dim=-1)[inverse.to(dev)]
