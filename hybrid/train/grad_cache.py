"""Gradient caching (GradCache, Gao et al. 2021): a global batch larger than memory allows.

The contrastive loss couples every query with every candidate of the global batch, so it
cannot be split into independent mini-batches. GradCache splits the *encoder* work instead:

1. embed the texts in chunks of `chunk` texts without a graph (memory: one chunk's
   activations), recording the RNG state before each chunk;
2. compute the loss (`hybrid.loss.info_nce_loss`, hard negatives and the candidates
   all-gathered from every worker included) on those embeddings as leaf tensors and
   backpropagate it to them: the gradient of the loss w.r.t. every embedding (across
   workers, `all_gather_with_grad`'s backward sums every worker's part);
3. per chunk: restore its RNG state (the same dropout masks), embed it again with the
   graph and backpropagate `embedding . cached gradient`, accumulating parameter gradients.
   Each chunk is tokenized once, for both passes.

Loss and parameter gradients equal those of one forward/backward over the whole batch (to
float rounding, tests/test_grad_cache.py), at the cost of a second forward pass. Chunks are
taken in order of text length (less padding); the result is in input order.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _rng_state(device: torch.device):
    if device.type == "cuda":
        return torch.get_rng_state(), torch.cuda.get_rng_state(device)
    return torch.get_rng_state(), None


def _set_rng_state(state, device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def _chunks(texts: Sequence[str], chunk: int) -> list[list[int]]:
    """Indices of `texts` in chunks of `chunk`, longest texts first (by characters)."""
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    return [order[s:s + chunk] for s in range(0, len(order), chunk)]


def _tokenized(encoder, texts: Sequence[str], kind: str, chunk: int) -> list:
    """[(indices on the encoder's device, `tokenize_chunks` output)] per chunk."""
    dev = encoder.device
    return [(torch.tensor(idx, device=dev), encoder.tokenize_chunks([texts[i] for i in idx], kind))
            for idx in _chunks(texts, chunk)]


def _embed_no_grad(encoder, chunks: list, n: int, bf16: bool, states: list | None) -> torch.Tensor:
    dev = encoder.device
    out = torch.empty(n, encoder.dim, device=dev)
    with torch.no_grad(), torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=bf16):
        for idx, tokens in chunks:
            if states is not None:
                states.append(_rng_state(dev))
            out[idx] = encoder.embed_tokenized(tokens).float()
    return out


def embed_chunked(encoder, texts: Sequence[str], kind: str, chunk: int, bf16: bool,
                  states: list | None = None) -> torch.Tensor:
    """Embeddings [len(texts), dim] (float32, input order) computed `chunk` texts at a time
    without a graph. If `states` is a list, the RNG state before each chunk is appended."""
    return _embed_no_grad(encoder, _tokenized(encoder, texts, kind, chunk), len(texts), bf16, states)


def _replay(encoder, chunks: list, bf16: bool, states: list, grad: torch.Tensor) -> None:
    """Second pass: chunk by chunk, the same RNG state, backward of (embedding . grad)."""
    dev = encoder.device
    for (idx, tokens), state in zip(chunks, states, strict=True):
        _set_rng_state(state, dev)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=bf16):
            emb = encoder.embed_tokenized(tokens).float()
        emb.backward(grad[idx])


def cached_backward(encoder, queries: Sequence[str], passages: Sequence[str], loss_fn, chunk: int,
                    bf16: bool) -> torch.Tensor:
    """Accumulate into the encoder's `.grad` the gradient of `loss_fn(q, p)` with GradCache.

    `queries` (b texts) and `passages` (positives then hard negatives, as the caller lays
    them out) are embedded `chunk` texts at a time; `loss_fn(q [b, dim], p [n, dim])` must
    be the loss of this process (it may all-gather across workers). Returns the loss
    (detached). The RNG state after the call is the one after the first pass.
    """
    dev = encoder.device
    q_states: list = []
    p_states: list = []
    q_chunks = _tokenized(encoder, queries, "query", chunk)  # tokenized once for both passes
    p_chunks = _tokenized(encoder, passages, "passage", chunk)
    q = _embed_no_grad(encoder, q_chunks, len(queries), bf16, q_states).requires_grad_()
    p = _embed_no_grad(encoder, p_chunks, len(passages), bf16, p_states).requires_grad_()
    after = _rng_state(dev)
    loss = loss_fn(q, p)
    loss.backward()
    _replay(encoder, q_chunks, bf16, q_states, q.grad)
    _replay(encoder, p_chunks, bf16, p_states, p.grad)
    _set_rng_state(after, dev)
    return loss.detach()
