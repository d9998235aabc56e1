"""InfoNCE: masking, hard negatives, temperature, and gathered negatives over 2 gloo workers."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.nn.functional as F

from hybrid.loss import group_keys, info_nce_loss

B, H, D_IN, D = 8, 2, 12, 6
IDS = ["a", "b", "c", "d", "e", "a", "f", "g"]  # "a" twice: the mask must act across workers


def _data():
    g = torch.Generator().manual_seed(0)
    return (torch.randn(B, D_IN, generator=g), torch.randn(B, D_IN, generator=g),
            torch.randn(B, H, D_IN, generator=g))


def _model():
    torch.manual_seed(1)
    return torch.nn.Linear(D_IN, D)


def _step(model, xq, xp, xh, keys):
    enc = lambda x: F.normalize(model(x), dim=-1)  # noqa: E731
    loss = info_nce_loss(enc(xq), enc(xp), keys, hard=enc(xh), temperature=0.05)
    loss.backward()
    return loss


def _worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    xq, xp, xh = _data()
    b = B // world
    sl = slice(rank * b, (rank + 1) * b)
    model = _model()
    loss = _step(model, xq[sl], xp[sl], xh[sl], group_keys(IDS[sl]))
    dist.all_reduce(loss.detach(), op=dist.ReduceOp.AVG)
    grads = [prm.grad.clone() for prm in model.parameters()]
    for grd in grads:  # the trainer averages gradients over workers the same way
        dist.all_reduce(grd, op=dist.ReduceOp.AVG)
    torch.save({"loss": loss.detach(), "grads": grads}, f"{out}.{rank}")
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_workers_equal_one_process(tmp_path):
    import torch.multiprocessing as mp

    out = str(tmp_path / "res")
    mp.spawn(_worker, args=(2, _free_port(), out), nprocs=2, join=True)
    model = _model()
    ref_loss = _step(model, *_data(), group_keys(IDS))
    ref_grads = [prm.grad for prm in model.parameters()]
    for rank in range(2):
        got = torch.load(f"{out}.{rank}")
        assert torch.allclose(got["loss"], ref_loss.detach(), atol=1e-5, rtol=0)
        for g, r in zip(got["grads"], ref_grads, strict=True):
            assert torch.allclose(g, r, atol=1e-5, rtol=0), (g - r).abs().max()


def test_same_xling_id_is_masked_except_the_positive():
    q = F.normalize(torch.randn(3, 4), dim=-1)
    p = F.normalize(torch.randn(3, 4), dim=-1)
    t = 0.1
    keys = group_keys(["x", "y", "x"])
    got = info_nce_loss(q, p, keys, temperature=t)
    logits = q @ p.T / t
    # query 0 must not see passage 2 (same key), query 2 must not see passage 0
    want = torch.stack([
        -F.log_softmax(logits[0, [0, 1]], 0)[0],
        -F.log_softmax(logits[1], 0)[1],
        -F.log_softmax(logits[2, [1, 2]], 0)[1],
    ]).mean()
    assert torch.allclose(got, want, atol=1e-6)


def test_hard_negatives_and_temperature():
    q = F.normalize(torch.randn(2, 4), dim=-1)
    p = F.normalize(torch.randn(2, 4), dim=-1)
    hard = F.normalize(torch.randn(2, 1, 4), dim=-1)
    keys = group_keys(["x", "y"])
    cands = torch.cat([p, hard[:, 0]])
    for t in (0.05, 1.0):
        want = F.cross_entropy(q @ cands.T / t, torch.arange(2))
        assert torch.allclose(info_nce_loss(q, p, keys, hard=hard, temperature=t), want, atol=1e-5)
    # a perfect retriever has near-zero loss at a low temperature
    e = torch.eye(2, 4)
    assert info_nce_loss(e, e, keys, temperature=0.01).item() < 1e-6


def test_bad_temperature_and_shapes():
    q = torch.randn(2, 4)
    with pytest.raises(ValueError):
        info_nce_loss(q, q, group_keys(["a", "b"]), temperature=0)
    with pytest.raises(ValueError):
        info_nce_loss(q, q[:1], group_keys(["a", "b"]))
