"""Contrastive loss: InfoNCE over in-batch (and gathered, and hard) negatives.

Inputs on each worker (rank r of W, local batch b, embedding dim d):
- `q`: (b, d) L2-normalised query embeddings of the local pairs;
- `p`: (b, d) their positive passages;
- `hard`: optional (b, h, d) hard negatives (same h on every worker);
- `keys`: (b,) int64 group keys (`group_keys`: one per dataset/xling_id).

The candidates of every query are the positives and hard negatives of *all* workers
(`all_gather_with_grad`), so a step over W workers scores exactly the global batch. The
score is cosine / temperature (default 0.05; the paper does not state one). Positives of
other pairs that share the query's key (parallel answers of the same xling_id) are masked
out; the query's own positive is the label. The loss is the mean over the local queries,
so the mean of the workers' losses is the loss of the global batch, and with gradients
averaged over workers (as the trainer does) loss and gradients equal those of one process
holding the whole batch.

Multi-positive (`multi_positive=True`, issue #19 "parallel answers as positives", for
batches drawn with `parallel_k` > 1): the positives of query i are all gathered positive
passages (not hard negatives) whose key equals i's key (its own and its parallel answers,
which the plain loss masks), and

    loss_i = -mean_{j in positives(i)} log softmax(logits_i)_j

over all candidates (nothing masked), so every positive is pushed up against the same
denominator. With one positive per query (every key once in the global batch) it equals the
plain InfoNCE loss. Keys are gathered, so parallel answers held by other workers count too.
Losses and logits are computed in float32 (float64 inputs stay float64).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import torch
import torch.distributed as dist
import torch.nn.functional as F

DEFAULT_TEMPERATURE = 0.05


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _AllGather(torch.autograd.Function):
    """all_gather along dim 0; backward sums the gradients of every worker's loss and
    returns this worker's slice, so gradients reach the local part from all workers."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        rank, world = _world()
        ctx.rank, ctx.n = rank, t.shape[0]
        out = [torch.empty_like(t) for _ in range(world)]
        dist.all_gather(out, t.contiguous())
        return torch.cat(out, 0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.n:(ctx.rank + 1) * ctx.n]


def all_gather_with_grad(t: torch.Tensor) -> torch.Tensor:
    """Concatenate `t` from all workers along dim 0 (identity on one process)."""
    if _world()[1] == 1:
        return t
    return _AllGather.apply(t)


def all_gather_keys(keys: torch.Tensor) -> torch.Tensor:
    """Concatenate integer keys from all workers (no gradient)."""
    if _world()[1] == 1:
        return keys
    out = [torch.empty_like(keys) for _ in range(_world()[1])]
    dist.all_gather(out, keys.contiguous())
    return torch.cat(out, 0)


def group_keys(ids: Iterable[str], device=None) -> torch.Tensor:
    """Stable int64 keys for group ids (e.g. "dataset/xling_id"), equal on every worker."""
    keys = [int.from_bytes(hashlib.blake2b(str(i).encode(), digest_size=8).digest(), "little",
                           signed=True) for i in ids]
    return torch.tensor(keys, dtype=torch.int64, device=device)


def _up(t: torch.Tensor) -> torch.Tensor:
    """float32, or float64 kept (gradcheck)."""
    return t if t.dtype == torch.float64 else t.float()


def info_nce_loss(q: torch.Tensor, p: torch.Tensor, keys: torch.Tensor,
                  hard: torch.Tensor | None = None,
                  temperature: float = DEFAULT_TEMPERATURE,
                  multi_positive: bool = False) -> torch.Tensor:
    """Mean InfoNCE loss of the local queries against all workers' candidates.

    Candidates are laid out per worker as [positives (b), hard negatives (b*h)]; computed
    in float32 even under autocast. With `multi_positive`, every gathered positive passage
    sharing the query's key is a positive (mean of their log-probabilities; module
    docstring); else those other than the query's own are masked out.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    b, d = q.shape
    if p.shape != (b, d) or keys.shape != (b,):
        raise ValueError(f"shapes differ: q {tuple(q.shape)}, p {tuple(p.shape)}, keys {tuple(keys.shape)}")
    h = 0 if hard is None else hard.shape[1]
    local = p if hard is None else torch.cat([p, hard.reshape(b * h, d)], 0)
    cands = all_gather_with_grad(_up(local))
    all_keys = all_gather_keys(keys)
    rank, world = _world()
    per = b * (1 + h)
    labels = torch.arange(b, device=q.device) + rank * per
    logits = _up(q) @ cands.T / temperature
    # Positives of other pairs with the query's key: parallel answers, not negatives.
    pos_index = (torch.arange(world, device=q.device)[:, None] * per
                 + torch.arange(b, device=q.device)[None, :]).reshape(-1)
    same = keys[:, None] == all_keys[None, :]
    mask = torch.zeros_like(logits, dtype=torch.bool)
    if multi_positive:  # own and parallel answers are all positives; nothing masked
        mask[:, pos_index] = same
        logp = F.log_softmax(logits, dim=1)
        return -(logp.masked_fill(~mask, 0.0).sum(1) / mask.sum(1)).mean()
    own = torch.arange(b, device=q.device)
    same[own, rank * b + own] = False
    mask[:, pos_index] = same
    logits = logits.masked_fill(mask, float("-inf"))
    return F.cross_entropy(logits, labels)
