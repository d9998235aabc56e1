"""Issue #19 recipes 2 and 5: alpha schedules (`alpha_at`, a scheduled `HybridBatchSampler`)
and parallel answers as positives (`parallel_k` cross batches, `info_nce_loss(multi_positive=True)`),
plus their config fields and one-line errors."""

from __future__ import annotations

import json
import math
from collections import Counter

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from hybrid.errors import HybridError
from hybrid.loss import group_keys, info_nce_loss
from hybrid.sampling import HybridBatchSampler, alpha_at, check_sampling
from hybrid.train import config
from hybrid.train.data import make_samplers, val_alpha_of

LANGS = ["ar", "de", "en", "es", "zh"]
COLS = ["dataset", "xling_id", "lang"]


def _parallel(n_ids: int, langs=LANGS, dataset="xq") -> pd.DataFrame:
    return pd.DataFrame([(dataset, str(i), lg) for i in range(n_ids) for lg in langs], columns=COLS)


def _partial(n_ids: int, dataset="xq") -> pd.DataFrame:
    """Id i exists in the first 1 + i % 5 languages: 1 to 5 languages per id."""
    return pd.DataFrame([(dataset, str(i), lg) for i in range(n_ids) for lg in LANGS[:1 + i % 5]],
                        columns=COLS)


# -- alpha schedules ------------------------------------------------------------------------

def test_alpha_at_constant_linear_cosine_and_reverse():
    T = 11  # midpoint step 5: s / (T - 1) = 0.5 exactly
    for s in (0, 5, 10, 100):
        assert alpha_at(s, 0.3) == 0.3
        assert alpha_at(s, 0.3, None, "linear", T) == 0.3  # alpha_end None: same as alpha
    # mono-heavy to cross-heavy, and the reverse
    assert [alpha_at(s, 1.0, 0.0, "linear", T) for s in (0, 5, 10)] == [1.0, 0.5, 0.0]
    assert [alpha_at(s, 0.0, 1.0, "linear", T) for s in (0, 5, 10)] == [0.0, 0.5, 1.0]
    assert [alpha_at(s, 1.0, 0.0, "cosine", T) for s in (0, 5, 10)] == [1.0, 0.5, 0.0]
    assert [alpha_at(s, 0.0, 1.0, "cosine", T) for s in (0, 5, 10)] == [0.0, 0.5, 1.0]
    # exact ends for any values; the formulas of the issue in between
    a, e = 0.1, 0.7
    assert alpha_at(0, a, e, "linear", T) == a and alpha_at(T - 1, a, e, "linear", T) == e
    assert alpha_at(0, a, e, "cosine", T) == a and alpha_at(T - 1, a, e, "cosine", T) == e
    for s in range(T):
        assert math.isclose(alpha_at(s, a, e, "linear", T), a + (e - a) * s / (T - 1), abs_tol=1e-12)
        assert math.isclose(alpha_at(s, a, e, "cosine", T),
                            e + (a - e) * (1 + math.cos(math.pi * s / (T - 1))) / 2, abs_tol=1e-12)
    # cosine stays near alpha longer than linear early on, and near alpha_end late
    assert alpha_at(2, 1.0, 0.0, "cosine", T) > alpha_at(2, 1.0, 0.0, "linear", T)
    assert alpha_at(8, 1.0, 0.0, "cosine", T) < alpha_at(8, 1.0, 0.0, "linear", T)
    # past the run: alpha_end; a one-step run: alpha
    assert alpha_at(50, 1.0, 0.0, "cosine", T) == 0.0
    assert alpha_at(0, 0.2, 0.9, "linear", 1) == 0.2


def _mono_share(batches) -> float:
    return sum(b.type == "mono" for b in batches) / len(batches)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_scheduled_sampler_goes_from_mono_to_cross_and_back(schedule):
    T = 600
    table = _parallel(40)
    down = HybridBatchSampler(table, "hybrid", 8, 1.0, seed=3, alpha_end=0.0, alpha_schedule=schedule,
                              total_steps=T)
    assert len(down) == 5  # the schedule spans epochs: s = epoch * len + i
    batches = list(down.stream(0, T))
    assert batches[0].type == "mono" and batches[-1].type == "cross"  # p = 1 and p = 0 exactly
    first, last = _mono_share(batches[:100]), _mono_share(batches[-100:])
    assert first > 0.85 and last < 0.15
    assert 0.4 < _mono_share(batches) < 0.6  # mean of the schedule: 0.5
    assert [down.mono_prob(s) for s in (0, T - 1)] == [1.0, 0.0]
    up = HybridBatchSampler(table, "hybrid", 8, 0.0, seed=3, alpha_end=1.0, alpha_schedule=schedule,
                            total_steps=T)
    batches = list(up.stream(0, T))
    assert batches[0].type == "cross" and batches[-1].type == "mono"
    assert _mono_share(batches[:100]) < 0.15 and _mono_share(batches[-100:]) > 0.85
    # both pools exist although the schedule starts at alpha = 0
    assert ("xq", "*cross") in up.pools and ("xq", "en") in up.pools


def test_constant_schedule_is_the_default_stream():
    table = _partial(60)
    base = HybridBatchSampler(table, "hybrid", 8, 0.4, seed=5, world_size=2)
    for kw in ({"alpha_schedule": "constant"}, {"alpha_schedule": "linear", "total_steps": 50},
               {"alpha_schedule": "cosine", "alpha_end": 0.4, "total_steps": 50}, {"parallel_k": 1}):
        other = HybridBatchSampler(table, "hybrid", 8, 0.4, seed=5, world_size=2, **kw)
        assert [b.to_json() for b in other.stream(0, 40)] == [b.to_json() for b in base.stream(0, 40)]


@pytest.mark.parametrize("kwargs, message", [
    ({"strategy": "x-y", "alpha_schedule": "linear", "alpha_end": 0.0, "total_steps": 9}, "--alpha-schedule"),
    ({"strategy": "x-x-mono", "alpha_end": 0.0, "alpha_schedule": "cosine", "total_steps": 9},
     "--alpha-schedule"),
    ({"strategy": "x-y", "alpha_end": 0.3}, "--alpha-end"),
    ({"alpha_end": 1.5, "alpha_schedule": "linear", "total_steps": 9}, "--alpha-end: must be in"),
    ({"alpha_end": -0.1, "alpha_schedule": "linear", "total_steps": 9}, "--alpha-end: must be in"),
    ({"alpha_end": float("nan"), "alpha_schedule": "linear", "total_steps": 9}, "--alpha-end"),
    ({"alpha_end": 0.2}, "--alpha-end: needs --alpha-schedule"),
    ({"alpha_schedule": "step", "total_steps": 9}, "--alpha-schedule: unknown"),
    ({"alpha_schedule": "linear", "alpha_end": 0.2}, "run length"),
    ({"alpha_schedule": "linear", "alpha_end": 0.2, "total_steps": 0}, "run length"),
    ({"parallel_k": 0}, "--parallel-k"),
    ({"parallel_k": 3}, "--parallel-k: 3 must divide"),
    ({"parallel_k": 8}, "at least 2 ids"),
    ({"strategy": "x-x-mono", "parallel_k": 2}, "--parallel-k: needs a strategy"),
    ({"strategy": "multitask", "parallel_k": 2}, "--parallel-k: needs a strategy"),
])
def test_recipe_errors_are_one_line(kwargs, message):
    kwargs = {"strategy": "hybrid", "batch_size": 8, **kwargs}
    with pytest.raises(HybridError, match=message) as exc:
        HybridBatchSampler(_parallel(20), **kwargs)
    assert "\n" not in str(exc.value)


def test_config_validation_and_round_trip():
    cfg = config.resolve("tiny", {"data.alpha": 1.0, "data.alpha_schedule": "cosine", "data.alpha_end": 0.0,
                                  "data.parallel_k": 2, "optim.multi_positive": True})
    assert (cfg.data.alpha_schedule, cfg.data.alpha_end, cfg.data.parallel_k, cfg.optim.multi_positive) \
        == ("cosine", 0.0, 2, True)
    again = config.TrainConfig.from_dict(cfg.to_dict())
    assert again == cfg
    d = config.TrainConfig().data
    assert (d.alpha_schedule, d.alpha_end, d.parallel_k) == ("constant", None, 1)
    assert config.TrainConfig().optim.multi_positive is False
    for bad, message in [({"data.strategy": "x-y", "data.alpha_schedule": "linear"}, "--alpha-schedule"),
                         ({"data.alpha_schedule": "linear", "data.alpha_end": 2.0}, "--alpha-end"),
                         ({"data.strategy": "x-x", "data.alpha_end": 0.5}, "--alpha-end"),
                         ({"data.parallel_k": 5}, "--parallel-k"),
                         ({"data.alpha_schedule": "warm"}, "--alpha-schedule")]:
        with pytest.raises(HybridError, match=message):
            config.resolve("tiny", bad)
    with pytest.raises(HybridError, match="data.parallel_k must be int"):
        config.resolve("tiny", {"data.parallel_k": "2"})
    # the CLI options are generated from the fields
    from hybrid.cli.train import setting_options

    names = {p.name for p in setting_options().values()}
    assert {"alpha_schedule", "alpha_end", "parallel_k", "multi_positive"} <= names


def test_make_samplers_schedule_spans_the_run_and_validation_is_constant():
    cfg = config.resolve("tiny", {"data.alpha": 1.0, "data.alpha_end": 0.0, "data.alpha_schedule": "linear",
                                  "data.val_ids": 10, "data.batch_size": 4, "run.steps": 21,
                                  "data.parallel_k": 2})
    train, val = make_samplers(_parallel(60), cfg)
    assert train.total_steps == 21 and train.mono_prob(0) == 1.0 and train.mono_prob(20) == 0.0
    assert train.mono_prob(10) == 0.5 and train.parallel_k == 2
    assert val_alpha_of(cfg.data) == 0.5 and val.alpha == 0.5 and val.mono_prob(0) == val.mono_prob(99) == 0.5
    assert val.parallel_k == 2


def test_cli_batches_passes_the_recipe_options(tmp_path, capsys):
    from hybrid.cli import main
    from hybrid.data.pairs import write_pairs

    table = pd.DataFrame([{"dataset": "toy", "xling_id": f"id{i}", "lang": lg, "question": f"{lg} q {i}",
                           "positive": f"{lg} a {i}", "context": None, "hard_negatives": []}
                          for i in range(40) for lg in LANGS])
    write_pairs(table, tmp_path / "pairs", {"source": "test"})
    out = tmp_path / "b.jsonl"
    args = ["batches", "--pairs", str(tmp_path / "pairs"), "--out", str(out), "--batch-size", "8",
            "--alpha", "1", "--alpha-schedule", "linear", "--alpha-end", "0", "--parallel-k", "2",
            "--steps", "30", "--seed", "7"]
    assert main(args) == 0, capsys.readouterr().err
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    want = HybridBatchSampler(table[COLS], "hybrid", 8, 1.0, seed=7, alpha_end=0.0, alpha_schedule="linear",
                              total_steps=30, parallel_k=2)
    assert lines == [b.to_json() for b in want.stream(0, 30)]
    assert lines[0]["type"] == "mono" and lines[-1]["type"] == "cross"
    ids = [p["xling_id"] for p in lines[-1]["pairs"]]
    assert len(ids) == 8 and set(Counter(ids).values()) == {2}
    # without --steps the schedule spans the epoch written
    assert main(args[:-4] + ["--seed", "7"]) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines[0]["type"] == "mono" and lines[-1]["type"] == "cross"
    assert main(["batches", "--pairs", str(tmp_path / "pairs"), "--out", str(out), "--strategy", "x-y",
                 "--alpha-schedule", "cosine"]) == 2
    assert "--alpha-schedule" in capsys.readouterr().err


# -- parallel answers -----------------------------------------------------------------------

@pytest.mark.parametrize("k, world, strategy", [(2, 1, "x-y"), (2, 2, "hybrid"), (4, 2, "x-y"),
                                                (3, 3, "hybrid"), (5, 1, "x-y")])
def test_parallel_k_cross_batches(k, world, strategy):
    B = 6 * k if k != 4 else 8
    table = pd.concat([_partial(120), _parallel(30, dataset="full")])
    langs_of = {(d, x): set(g["lang"]) for (d, x), g in table.groupby(["dataset", "xling_id"])}
    samplers = [HybridBatchSampler(table, strategy, B, 0.5, seed=11, rank=r, world_size=world, parallel_k=k)
                for r in range(world)]
    s = samplers[0]
    assert {len(r) for r in samplers} == {len(s)}
    types = Counter()
    for epoch in (0, 1):
        plan = s.epoch_plan(epoch)
        for r in samplers:
            r.set_epoch(epoch)
        local = [list(r) for r in samplers]
        for i, batch in enumerate(plan):
            types[batch.type] += 1
            assert len(batch.pairs) == B
            ids = [p.xling_id for p in batch.pairs]
            for p in batch.pairs:
                assert {p.q_lang, p.p_lang} <= langs_of[(batch.dataset, p.xling_id)]
            if batch.type == "cross":
                counts = Counter(ids)
                assert len(counts) == B // k and set(counts.values()) == {k}
                for j in range(0, B, k):  # the k pairs of an id are adjacent
                    group = batch.pairs[j:j + k]
                    assert len({p.xling_id for p in group}) == 1
                    assert len({p.p_lang for p in group}) == k  # distinct passage languages
                    assert all(p.q_lang != p.p_lang for p in group)
                    assert len(langs_of[(batch.dataset, group[0].xling_id)]) >= max(2, k)
            else:  # mono batches unchanged: every id once, one language
                assert len(set(ids)) == B
                assert {p.q_lang for p in batch.pairs} | {p.p_lang for p in batch.pairs} == {batch.language}
            slices = [loc[i] for loc in local]
            assert all(len(sl.pairs) == B // world for sl in slices)
            assert sum((sl.pairs for sl in slices), ()) == batch.pairs
    assert types["cross"] > 0 and (strategy == "x-y") == (types["mono"] == 0)
    again = HybridBatchSampler(table, strategy, B, 0.5, seed=11, parallel_k=k)
    assert again.epoch_plan(1) == s.epoch_plan(1)


def test_parallel_k_languages_are_uniform():
    """q_lang uniform over the id's other languages, each language as often a passage one."""
    s = HybridBatchSampler(_parallel(40), "x-y", 8, seed=2, parallel_k=2)
    pairs = [p for b in s.stream(0, 600) for p in b.pairs]
    n = len(pairs)
    for field in ("p_lang", "q_lang"):
        counts = Counter(getattr(p, field) for p in pairs)
        assert set(counts) == set(LANGS)
        assert all(abs(c - n / 5) <= 5 * math.sqrt(n * 0.2 * 0.8) for c in counts.values()), counts
    pq = Counter((p.p_lang, p.q_lang) for p in pairs)
    assert len(pq) == 20  # every ordered pair of distinct languages occurs


def test_parallel_k_needs_ids_in_k_languages():
    # _partial(40): 8 ids in each of 1..5 languages; ids in >= 4 languages: 16
    s = HybridBatchSampler(_partial(40), "x-y", 8, parallel_k=4)
    assert len(s.pools[("xq", "*cross")]) == 16
    assert len(HybridBatchSampler(_partial(15), "x-y", 20, parallel_k=4).pools[("xq", "*cross")]) == 6
    with pytest.raises(HybridError, match="--parallel-k: 4 needs --batch-size / 4 = 5 ids") as exc:
        HybridBatchSampler(_partial(10), "x-y", 20, parallel_k=4)  # 4 ids in >= 4 languages
    assert "\n" not in str(exc.value)
    with pytest.raises(HybridError, match="--parallel-k: 2 needs"):
        HybridBatchSampler(_parallel(20, ["en"]), "x-y", 4, parallel_k=2)


def test_parallel_k1_keeps_the_stream():
    table = _partial(80)
    for strategy in ("hybrid", "x-y"):
        a = HybridBatchSampler(table, strategy, 8, 0.3, seed=4, world_size=2, rank=1)
        b = HybridBatchSampler(table, strategy, 8, 0.3, seed=4, world_size=2, rank=1, parallel_k=1)
        assert a.epoch_plan(0) == b.epoch_plan(0) and list(a) == list(b)


# -- multi-positive loss ----------------------------------------------------------------------

def _embs(n, d=6, h=0, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    q = F.normalize(torch.randn(n, d, generator=g, dtype=dtype), dim=-1)
    p = F.normalize(torch.randn(n, d, generator=g, dtype=dtype), dim=-1)
    hard = F.normalize(torch.randn(n, h, d, generator=g, dtype=dtype), dim=-1) if h else None
    return q, p, hard


@pytest.mark.parametrize("h", [0, 2])
def test_multi_positive_equals_info_nce_with_one_positive_each(h):
    q, p, hard = _embs(6, h=h)
    keys = group_keys(list("abcdef"))
    for t in (0.05, 0.5):
        plain = info_nce_loss(q, p, keys, hard=hard, temperature=t)
        multi = info_nce_loss(q, p, keys, hard=hard, temperature=t, multi_positive=True)
        assert torch.allclose(multi, plain, atol=1e-6, rtol=1e-6)


def test_multi_positive_with_parallel_answers():
    q, p, hard = _embs(6, h=1)
    keys = group_keys(["a", "a", "b", "b", "c", "c"])  # parallel_k = 2
    t = 0.1
    got = info_nce_loss(q, p, keys, hard=hard, temperature=t, multi_positive=True)
    logits = q @ torch.cat([p, hard[:, 0]]).T / t
    logp = F.log_softmax(logits, dim=1)  # nothing masked: the denominator is every candidate
    pos = [[0, 1], [0, 1], [2, 3], [2, 3], [4, 5], [4, 5]]
    want = torch.stack([-logp[i, pos[i]].mean() for i in range(6)]).mean()
    assert torch.allclose(got, want, atol=1e-6)
    plain = info_nce_loss(q, p, keys, hard=hard, temperature=t)
    assert not torch.allclose(got, plain, atol=1e-4)
    # pulling parallel answers together lowers the loss (they are positives now)
    tied = p.clone()
    tied[1], tied[3], tied[5] = p[0], p[2], p[4]
    q2 = tied.clone()
    assert info_nce_loss(q2, tied, keys, temperature=0.05, multi_positive=True) < \
        info_nce_loss(q2, p, keys, temperature=0.05, multi_positive=True)


def test_multi_positive_gradcheck_float64():
    g = torch.Generator().manual_seed(3)
    q = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    p = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    hard = torch.randn(4, 1, 3, generator=g, dtype=torch.float64, requires_grad=True)
    keys = group_keys(["a", "a", "b", "c"])
    assert torch.autograd.gradcheck(
        lambda q, p, hard: info_nce_loss(q, p, keys, hard=hard, temperature=0.5, multi_positive=True),
        (q, p, hard))
    assert torch.autograd.gradcheck(
        lambda q, p: info_nce_loss(q, p, keys, temperature=0.5, multi_positive=True), (q, p))


def test_check_sampling_defaults_unchanged():
    check_sampling("hybrid", 0.5, 8)
    check_sampling("x-y", 0.5, 8, 2, parallel_k=2)
    check_sampling("hybrid", 0.0, 8, alpha_end=1.0, alpha_schedule="cosine", total_steps=1)


def test_batch_loss_passes_multi_positive(tiny):
    """`optim.multi_positive` reaches the loss of `hybrid.train.core.batch_loss`: the same
    loss without parallel answers, a different one with them."""
    from toy_train import ToyTexts

    from hybrid.encoder import BiEncoder
    from hybrid.sampling import Batch, Pair
    from hybrid.train.core import batch_loss

    enc = BiEncoder.from_pretrained(tiny)
    enc.model.eval()  # no dropout: both losses see the same embeddings
    base = config.load_profile("tiny").override(**{"run.workers": 1, "run.bf16": False})
    multi = base.override(**{"optim.multi_positive": True})
    distinct = Batch(0, "cross", "toy", tuple(Pair(f"id{i}", "en", "de") for i in range(4)))
    parallel = Batch(0, "cross", "toy", tuple(Pair(f"id{i // 2}", "en", lg) for i, lg in
                                              enumerate(["de", "zh"] * 2)))
    with torch.no_grad():
        for batch, same in ((distinct, True), (parallel, False)):
            a = batch_loss(enc, ToyTexts(), batch, base, bf16=False)
            b = batch_loss(enc, ToyTexts(), batch, multi, bf16=False)
            assert torch.isclose(a, b, atol=1e-6).item() is same, (a, b)


def _mp_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    q, p, hard = _embs(8, h=1, seed=5)
    b = 8 // world
    sl = slice(rank * b, (rank + 1) * b)
    keys = group_keys(["a", "b", "c", "a", "d", "d", "e", "b"])[sl]  # parallel answers across workers
    qq, pp, hh = (t[sl].clone().requires_grad_() for t in (q, p, hard))
    loss = info_nce_loss(qq, pp, keys, hard=hh, temperature=0.1, multi_positive=True)
    loss.backward()
    dist.all_reduce(loss.detach(), op=dist.ReduceOp.AVG)
    torch.save({"loss": loss.detach(), "grads": [t.grad for t in (qq, pp, hh)]}, f"{out}.{rank}")
    dist.destroy_process_group()


def test_multi_positive_two_gloo_workers_equal_one_process(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = str(tmp_path / "res")
    mp.spawn(_mp_worker, args=(2, port, out), nprocs=2, join=True)
    q, p, hard = (t.clone().requires_grad_() for t in _embs(8, h=1, seed=5))
    keys = group_keys(["a", "b", "c", "a", "d", "d", "e", "b"])
    ref = info_nce_loss(q, p, keys, hard=hard, temperature=0.1, multi_positive=True)
    # a worker's gradients are those of the sum of both workers' losses (each the mean of its
    # half: 2 * ref), the gather's backward summing over workers (the trainer then averages)
    (ref * 2).backward()
    for rank in range(2):
        got = torch.load(f"{out}.{rank}")
        assert torch.allclose(got["loss"], ref.detach(), atol=1e-5)
        sl = slice(rank * 4, (rank + 1) * 4)
        for g, r in zip(got["grads"], (q.grad[sl], p.grad[sl], hard.grad[sl]), strict=True):
            assert torch.allclose(g, r, atol=1e-5), (g - r).abs().max()
