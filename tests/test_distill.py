"""Keep what the base model knew (issue #19 recipe 4, hybrid.train.distill): the term's math,
the Trainer's teacher (the starting model, frozen, also after a resume; none when off), the
term on cross steps only, its gradients with and without gradient caching, and the config's
checks."""

from __future__ import annotations

import dataclasses
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from toy_train import ToyTexts, batch_at, without_dropout

from hybrid.encoder import BiEncoder
from hybrid.errors import HybridError
from hybrid.model import make_tiny_model
from hybrid.sampling import Pair
from hybrid.train import load_profile
from hybrid.train.checkpoint import read_state, write_state
from hybrid.train.config import resolve
from hybrid.train.core import Trainer
from hybrid.train.distill import distill_term, mono_batch


def _emb(*shape, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(*shape, generator=g, dtype=dtype), dim=-1)


def _cfg(**over):
    base = {"model.freeze_embeddings": True, "run.bf16": False, "run.workers": 1,
            "optim.lr": 2e-3, "optim.warmup_steps": 0, "run.steps": 12, "run.val_every": 3,
            "run.patience": 10}
    return load_profile("tiny").override(**{**base, **over})


def _trainer(model_dir, cfg, **kw) -> Trainer:
    torch.manual_seed(0)
    return Trainer(BiEncoder.from_pretrained(model_dir), cfg, "cpu", ToyTexts(), log=None, **kw)


def _cross(step: int, **kw):
    return dataclasses.replace(batch_at(step, **kw), type="cross")


def _mono(step: int, **kw):
    b = batch_at(step, **kw)
    return dataclasses.replace(mono_batch(b), type="mono", language=None)


def _weights(encoder) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in encoder.named_parameters()}


# ------------------------------------------------------------------------ the math
@pytest.mark.parametrize("kind", ["kl", "mse"])
def test_the_term_is_zero_for_equal_models_and_positive_otherwise(kind):
    q, p = _emb(6, 16, seed=1), _emb(6, 16, seed=2)
    assert distill_term(q, p, q.clone(), p.clone(), kind, 0.05).item() == 0.0
    other = distill_term(q, p, _emb(6, 16, seed=3), p, kind, 0.05)
    assert other.item() > 0 and other.dim() == 0


@pytest.mark.parametrize("kind", ["kl", "mse"])
def test_gradcheck_in_float64(kind):
    q, p = _emb(4, 8, seed=1, dtype=torch.float64), _emb(4, 8, seed=2, dtype=torch.float64)
    tq, tp = _emb(4, 8, seed=3, dtype=torch.float64), _emb(4, 8, seed=4, dtype=torch.float64)
    q.requires_grad_()
    p.requires_grad_()
    assert distill_term(q, p, tq, tp, kind, 0.5).dtype == torch.float64
    assert torch.autograd.gradcheck(lambda a, b: distill_term(a, b, tq, tp, kind, 0.5), (q, p))


def test_kl_is_the_row_wise_mean_and_the_teacher_gets_no_gradient():
    q, p, tq, tp = (_emb(5, 8, seed=s) for s in range(4))
    tq.requires_grad_()
    t = 0.1
    got = distill_term(q, p, tq, tp, "kl", t)
    pt = torch.softmax(tq @ tp.T / t, -1)
    want = (pt * (pt.log() - torch.log_softmax(q @ p.T / t, -1))).sum(-1).mean()
    torch.testing.assert_close(got, want.detach())
    assert not got.requires_grad
    with pytest.raises(ValueError, match="kind"):
        distill_term(q, p, tq, tp, "js", t)


def test_mono_pairs_keep_the_question_language():
    b = _cross(0)
    m = mono_batch(b)
    assert m.step == b.step and m.dataset == b.dataset and m.type == b.type
    assert m.pairs == tuple(Pair(p.xling_id, p.q_lang, p.q_lang) for p in b.pairs)


# ----------------------------------------------------------------------- the trainer
def test_the_term_is_recorded_on_cross_steps_only_and_the_teacher_stays_the_start(tiny):
    start = _weights(BiEncoder.from_pretrained(tiny))
    tr = _trainer(tiny, _cfg(**{"optim.distill_weight": 1.0}))
    assert tr.distiller is not None and not tr.distiller.teacher.training
    assert not any(p.requires_grad for p in tr.distiller.teacher.parameters())
    batches = [_cross(0), _mono(1), _cross(2), batch_at(3), _cross(4)]
    recs = [tr.step(b) for b in batches]
    assert [("distill" in r) for r in recs] == [True, False, True, False, True]
    assert all(r["distill"] >= 0 for r in recs if "distill" in r)
    assert recs[-1]["distill"] > 0  # the student has moved away from the teacher
    for n, w in _weights(tr.distiller.teacher).items():
        torch.testing.assert_close(w, start[n], rtol=0, atol=0, msg=n)
    moved = _weights(tr.encoder)
    assert any(not torch.equal(moved[n], start[n]) for n in start)


def test_another_teacher_is_loaded_frozen_and_changes_the_term(tiny, tmp_path):
    """`optim.distill_teacher`: the teacher is that model (not the start), frozen, with the
    config's maximum lengths (the student's in a training); the loss is the same InfoNCE, the
    term differs from the start's."""
    other = make_tiny_model(tmp_path / "other", seed=1)
    cfg = _cfg(**{"optim.distill_weight": 1.0})
    own = _trainer(tiny, cfg)
    ext = _trainer(tiny, cfg.override(**{"optim.distill_teacher": str(other)}))
    want = _weights(BiEncoder.from_pretrained(other))
    got = _weights(ext.distiller.teacher)
    assert set(got) == set(want)
    for n, w in got.items():
        torch.testing.assert_close(w, want[n], rtol=0, atol=0, msg=n)
    assert not any(p.requires_grad for p in ext.distiller.teacher.parameters())
    assert ext.distiller.teacher.max_lens == {"query": cfg.model.max_query_len,
                                              "passage": cfg.model.max_passage_len}
    a, b = own.step(_cross(0)), ext.step(_cross(0))
    assert a["loss"] == b["loss"] and a["distill"] != pytest.approx(b["distill"])
    # the same teacher given as a loader (the Ray adapter's way) trains bit for bit the same
    loaded = _trainer(tiny, cfg.override(**{"optim.distill_teacher": str(other)}),
                      teacher=lambda: BiEncoder.from_pretrained(other))
    c = loaded.step(_cross(0))
    assert (c["loss"], c["distill"]) == (b["loss"], b["distill"])


def test_off_loads_no_teacher_and_trains_as_before(tiny, monkeypatch):
    import hybrid.train.distill as distill

    def boom(*a, **k):
        raise AssertionError("teacher built with distill_weight 0")

    monkeypatch.setattr(distill, "Distiller", boom)
    monkeypatch.setattr(distill, "frozen_copy", boom)
    batches = [_cross(0), _mono(1), _cross(2)]
    ref = _trainer(tiny, _cfg())
    off = _trainer(tiny, _cfg(**{"optim.distill_weight": 0.0, "optim.distill_loss": "mse"}),
                   teacher=boom)  # a loader that is never called
    assert ref.distiller is None and off.distiller is None
    a = [ref.step(b) for b in batches]
    b = [off.step(b) for b in batches]
    assert [r["loss"] for r in a] == [r["loss"] for r in b] and not any("distill" in r for r in b)
    for n, p in off.params.items():
        torch.testing.assert_close(p, ref.params[n], rtol=0, atol=0, msg=n)


def test_the_reported_loss_stays_infonce(tiny):
    plain = _trainer(tiny, _cfg())
    dist = _trainer(tiny, _cfg(**{"optim.distill_weight": 5.0}))
    a, b = plain.step(_cross(0)), dist.step(_cross(0))
    assert a["loss"] == b["loss"] and b["distill"] > 0  # same weights, same dropout seed


def test_a_resumed_run_keeps_the_starting_model_as_teacher(tiny, tmp_path):
    cfg = _cfg(**{"optim.distill_weight": 2.0, "optim.distill_loss": "mse"})
    start = _weights(BiEncoder.from_pretrained(tiny))
    a = _trainer(tiny, cfg)
    for s in range(3):
        a.step(_cross(s))
    write_state(tmp_path, a.state_dict())
    ref = a.step(_cross(3))

    b = _trainer(tiny, cfg, teacher=lambda: BiEncoder.from_pretrained(tiny))  # as the Ray adapter
    state, _ = read_state(tmp_path)
    b.load_state_dict(state)
    for n, w in _weights(b.distiller.teacher).items():
        torch.testing.assert_close(w, start[n], rtol=0, atol=0, msg=n)
    got = b.step(_cross(3))
    assert got["loss"] == ref["loss"] and got["distill"] == ref["distill"]
    for n, p in b.params.items():
        torch.testing.assert_close(p, a.params[n], rtol=0, atol=0, msg=n)


def test_the_gradient_is_the_terms_and_gradient_caching_gives_the_same(tmp_path):
    model = without_dropout(make_tiny_model(tmp_path / "tiny"))
    batch = _cross(0)
    w, t = 3.0, 0.2
    over = {"model.freeze_embeddings": False, "optim.distill_temperature": t}

    def grads(chunk, weight):
        tr = _trainer(model, _cfg(**over, **{"optim.distill_weight": weight, "data.grad_cache_chunk": chunk}))
        tr.backward(batch)
        return tr.last_distill, {n: p.grad.detach().clone() for n, p in tr.params.items()}

    _, base = grads(None, 0.0)
    term, plain = grads(None, w)
    # the reference: the term of the mono pairs by hand, on a fresh copy of the start
    enc = BiEncoder.from_pretrained(model)
    qs, ps, _ = ToyTexts().batch(mono_batch(batch), 0, 0)
    with torch.no_grad():
        tq, tp = enc.embed_texts(qs, "query"), enc.embed_texts(ps, "passage")
    want = w * distill_term(enc.embed_texts(qs, "query"), enc.embed_texts(ps, "passage"), tq, tp, "kl", t)
    want.backward()
    assert abs(term - want.item()) < 1e-6
    ref = dict(enc.named_parameters())
    for n, g in plain.items():
        torch.testing.assert_close(g - base[n], ref[n].grad, rtol=1e-4, atol=1e-6, msg=n)
    cterm, cached = grads(3, w)
    assert abs(cterm - term) < 1e-6
    for n, g in cached.items():
        torch.testing.assert_close(g, plain[n], rtol=1e-5, atol=1e-5, msg=n)


# ----------------------------------------------------------------- two processes
W2 = 2.0


def _term_grads(model_dir, batch, weight, collective=None, local=None):
    """(last_distill, {name: grad}) of one Trainer backward on `batch` (no dropout)."""
    tr = Trainer(BiEncoder.from_pretrained(model_dir), _cfg(**{"optim.distill_weight": weight}), "cpu",
                 ToyTexts(), collective=collective, local=local, log=None)
    tr.backward(batch)
    return tr.last_distill, {n: p.grad.detach().clone() for n, p in tr.params.items()}


def _slice(b, rank, world):
    n = len(b.pairs) // world
    return dataclasses.replace(b, pairs=b.pairs[rank * n:(rank + 1) * n])


def _worker(rank: int, world: int, port: int, model: str, out: str) -> None:
    import torch.distributed as dist

    from hybrid.train.collective import TorchDist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        res = {w: _term_grads(Path(model), _cross(5), w, TorchDist(), lambda b: _slice(b, rank, world))
               for w in (0.0, W2)}
        torch.save(res, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_average_the_local_terms(tmp_path):
    """Over two gloo processes the term is each worker's own (its slice's mono pairs, no
    gather), added before the gradient average: the distillation part of the averaged
    gradient is the mean of the slices' terms' gradients, the reported term their mean."""
    model = without_dropout(make_tiny_model(tmp_path / "tiny"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(2, port, str(model), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    single = []  # per slice, one process: the term and its gradient (loss gradient subtracted)
    for r in range(2):
        part = _slice(_cross(5), r, 2)
        off, on = _term_grads(model, part, 0.0), _term_grads(model, part, W2)
        single.append((on[0], {n: on[1][n] - off[1][n] for n in on[1]}))
    assert ranks[0][W2][0] == ranks[1][W2][0] and ranks[0][0.0][0] is None
    assert abs(ranks[0][W2][0] - (single[0][0] + single[1][0]) / 2) < 1e-6
    for n, g in ranks[0][W2][1].items():
        torch.testing.assert_close(g, ranks[1][W2][1][n], rtol=0, atol=0, msg=n)  # averaged
        want = (single[0][1][n] + single[1][1][n]) / 2
        torch.testing.assert_close(g - ranks[0][0.0][1][n], want, rtol=1e-4, atol=1e-6, msg=n)


# ------------------------------------------------------------------------- settings
def test_bad_settings_are_one_line_errors():
    for over, field in [({"optim.distill_loss": "x"}, "optim.distill_loss"),
                        ({"optim.distill_weight": -0.5}, "optim.distill_weight"),
                        ({"optim.distill_temperature": 0.0}, "optim.distill_temperature")]:
        with pytest.raises(HybridError) as err:
            resolve("tiny", over)
        msg = str(err.value)
        assert msg.startswith(field) and "\n" not in msg, msg
    cfg = resolve("tiny", {"optim.distill_weight": 0.5, "optim.distill_loss": "mse"})
    assert (cfg.optim.distill_weight, cfg.optim.distill_loss, cfg.optim.distill_temperature) == (0.5, "mse", None)
    assert resolve("tiny").optim.distill_weight == 0.0
    with pytest.raises(HybridError, match="^--distill-teacher: needs --distill-weight > 0"):
        resolve("tiny", {"optim.distill_teacher": "me5-small"})
    assert resolve("tiny", {"optim.distill_weight": 1.0, "optim.distill_teacher": "me5-small"}
                   ).optim.distill_teacher == "me5-small"
