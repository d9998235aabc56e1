"""Gradient caching (`data.grad_cache_chunk`, hybrid.train.grad_cache): loss and parameter
gradients equal the plain path to 1e-5 on the tiny model with hard negatives, in one process
and over two torch.distributed (gloo) processes; with dropout on, the second pass replays
the first pass's masks."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from toy_train import ToyTexts, batch_at, without_dropout

from hybrid.encoder import BiEncoder
from hybrid.model import make_tiny_model
from hybrid.train import load_profile
from hybrid.train.core import Trainer

TOL = {"rtol": 1e-5, "atol": 1e-5}


def _cfg(chunk, **over):
    return load_profile("tiny").override(**{
        "model.freeze_embeddings": False, "run.bf16": False, "data.batch_size": 8,
        "data.hard_negatives": 2, "data.grad_cache_chunk": chunk, **over})


def _grads(model_dir: Path, chunk: int | None, batch, collective=None, local=None):
    """(loss, {name: grad}) of one backward of the Trainer on `batch`."""
    tr = Trainer(BiEncoder.from_pretrained(model_dir), _cfg(chunk), "cpu", ToyTexts(),
                 collective=collective, local=local, log=None)
    loss = tr.backward(batch)
    return loss, {n: p.grad.detach().clone() for n, p in tr.params.items()}


def _assert_same(a, b):
    assert abs(a[0] - b[0]) <= 1e-5 * max(1.0, abs(a[0])), (a[0], b[0])
    assert a[1].keys() == b[1].keys()
    for n in a[1]:
        torch.testing.assert_close(b[1][n], a[1][n], **TOL, msg=n)


def test_one_process_equals_the_plain_path(tmp_path):
    model = without_dropout(make_tiny_model(tmp_path / "tiny"))
    batch = batch_at(0, size=8)
    plain = _grads(model, None, batch)
    assert any(g.abs().sum() > 0 for g in plain[1].values())
    for chunk in (3, 8):  # uneven chunks, and one chunk per kind
        _assert_same(plain, _grads(model, chunk, batch))


def test_dropout_masks_are_replayed(tiny):
    """With dropout on, the gradients are those of the first (no-graph) pass's function: a
    reference that embeds the same chunks with the graph under the same seed."""
    from hybrid.loss import group_keys, info_nce_loss
    from hybrid.train.core import prepare_encoder
    from hybrid.train.grad_cache import _chunks, cached_backward

    texts, batch, chunk, h = ToyTexts(), batch_at(1, size=6), 4, 2
    qs, ps, hs = texts.batch(batch, h, 0)
    keys = group_keys([p.xling_id for p in batch.pairs])

    def loss_fn(q, p):
        return info_nce_loss(q, p[:6], keys, hard=p[6:].reshape(6, h, -1))

    def run(cached: bool):
        enc = prepare_encoder(BiEncoder.from_pretrained(tiny), torch.device("cpu"), freeze=True)
        torch.manual_seed(5)
        if cached:
            loss = cached_backward(enc, qs, ps + hs, loss_fn, chunk, bf16=False)
        else:
            def embed(xs, kind):
                out = torch.empty(len(xs), enc.dim)
                for idx in _chunks(xs, chunk):
                    out = out.index_put((torch.tensor(idx),), enc.embed_texts([xs[i] for i in idx], kind))
                return out
            loss = loss_fn(embed(qs, "query"), embed(ps + hs, "passage"))
            loss.backward()
        return float(loss.detach()), {n: p.grad.clone() for n, p in enc.named_parameters() if p.grad is not None}

    _assert_same(run(False), run(True))


# ----------------------------------------------------------------- two processes
def _worker(rank: int, world: int, port: int, model: str, out: str) -> None:
    import torch.distributed as dist

    from hybrid.train.collective import TorchDist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        batch = batch_at(2, size=8)
        n = len(batch.pairs) // world

        def local(b):
            return type(b)(b.step, b.type, b.dataset, b.pairs[rank * n:(rank + 1) * n], b.language)

        res = {c: _grads(Path(model), c, batch, TorchDist(), local) for c in (None, 3)}
        torch.save(res, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_equal_the_plain_path_and_one_process(tmp_path):
    model = without_dropout(make_tiny_model(tmp_path / "tiny"))
    mp.spawn(_worker, args=(2, _free_port(), str(model), str(tmp_path)), nprocs=2, join=True)
    whole = _grads(model, None, batch_at(2, size=8))  # one process, the whole global batch
    for rank in range(2):
        res = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        _assert_same(res[None], res[3])  # cached == plain on two workers
        _assert_same(whole, res[3])      # == one process holding the global batch
