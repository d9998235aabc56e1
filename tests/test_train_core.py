"""The training core (`hybrid.train.core.Trainer`) in this process, without Ray: the loss
falls, save + load + step equals an uninterrupted step, early stopping triggers, hooks run."""

from __future__ import annotations

import json

import pytest
import torch
from toy_train import ToyTexts, batch_at

from hybrid.encoder import BiEncoder
from hybrid.errors import HybridError
from hybrid.train import load_profile
from hybrid.train.checkpoint import read_state, write_state
from hybrid.train.core import Trainer


def _cfg(**over):
    base = {"model.freeze_embeddings": True, "run.bf16": False, "run.workers": 1,
            "optim.lr": 2e-3, "optim.warmup_steps": 0, "run.steps": 12, "run.val_every": 3,
            "run.patience": 10}
    return load_profile("tiny").override(**{**base, **over})


def _trainer(tiny, cfg=None, **kw) -> Trainer:
    torch.manual_seed(0)
    return Trainer(BiEncoder.from_pretrained(tiny), cfg or _cfg(), "cpu", ToyTexts(), log=None, **kw)


def test_loss_falls_over_a_few_steps(tiny):
    tr = _trainer(tiny, _cfg(**{"data.hard_negatives": 1}))
    fixed = [batch_at(s % 2) for s in range(12)]  # two batches, six times each
    losses = [tr.step(fixed[s])["loss"] for s in range(12)]
    assert tr.step_count == 12 and len(tr.st["log"]) == 12
    assert sum(losses[-2:]) < 0.8 * sum(losses[:2]), losses


def test_save_load_step_equals_an_uninterrupted_step(tiny, tmp_path):
    cfg = _cfg(**{"data.hard_negatives": 1, "model.freeze_embeddings": False})
    a = _trainer(tiny, cfg, val_batches=[batch_at(100, dataset="flip")])
    a.validate()
    for s in range(3):
        a.step(batch_at(s))
    write_state(tmp_path, a.state_dict())
    ref = a.step(batch_at(3))
    want = {n: p.detach().clone() for n, p in a.params.items()}

    b = _trainer(tiny, cfg, val_batches=[batch_at(100, dataset="flip")])
    state, read = read_state(tmp_path)
    assert read == tmp_path
    b.load_state_dict(state)
    assert b.step_count == 3 and b.st["val_history"] == a.st["val_history"]
    got = b.step(batch_at(3))
    assert got["loss"] == ref["loss"] and got["lr"] == ref["lr"]
    for n, p in b.params.items():
        torch.testing.assert_close(p, want[n], rtol=0, atol=0, msg=n)
    assert b.counters.state() == a.counters.state()


def test_early_stopping_triggers_on_a_rising_validation_loss(tiny, tmp_path):
    # validation pairs each question with the *next* id's answer: learning the training pairs
    # soon makes it worse, and with patience 1 the first evaluation without a new best stops
    cfg = _cfg(**{"run.patience": 1, "run.val_every": 2, "run.steps": 40})
    tr = _trainer(tiny, cfg, val_batches=[batch_at(100 + i, dataset="flip") for i in range(2)])
    evals = []
    tr.fit(lambda s: batch_at(s % 2), on_eval=evals.append)
    losses = [v["loss"] for v in tr.st["val_history"]]
    assert tr.st["stopped_early"] and tr.done and tr.step_count < cfg.run.steps
    assert [v["step"] for v in tr.st["val_history"]] == list(range(0, tr.step_count + 1, 2))
    assert losses[-1] >= min(losses[:-1]) and all(b < a for a, b in zip(losses[:-2], losses[1:-1], strict=True))
    best = tr.st["best"]
    assert best["loss"] == min(losses) and best["step"] == tr.step_count - 2
    assert len(evals) == len(losses) - 2  # every evaluation after step 0 but the last one
    tr.write_outputs(tmp_path)
    s = json.loads((tmp_path / "train_summary.json").read_text())
    assert s["stopped_early"] and s["steps"] == tr.step_count and s["best_step"] == best["step"]
    saved = BiEncoder.from_pretrained(tmp_path / "model")  # the best weights, not the last
    params = dict(saved.named_parameters())
    for n, w in tr.best_weights.items():
        torch.testing.assert_close(params[n], w, msg=n)


def hook_record(trainer, record):
    trainer.st.setdefault("seen", []).append(record["step"])


def test_callbacks_are_module_function_specs(tiny):
    tr = _trainer(tiny, _cfg(**{"run.callbacks": ["test_train_core:hook_record"], "run.steps": 2}))
    tr.fit(batch_at)
    assert tr.st["seen"] == [1, 2]
    with pytest.raises(HybridError, match="run.callbacks: cannot import 'nope_mod:f'"):
        _trainer(tiny, _cfg(**{"run.callbacks": ["nope_mod:f"]}))
    with pytest.raises(HybridError, match="run.callbacks"):
        _cfg(**{"run.callbacks": ["no-colon"], "data.pairs": "p", "out": "o"}).validate()
