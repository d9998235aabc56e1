"""Property tests of every sampler invariant (hypothesis), plus its one-line errors."""

from __future__ import annotations

import math
from collections import Counter

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hybrid.errors import HybridError
from hybrid.sampling import STRATEGIES, HybridBatchSampler

LANGS = ["ar", "de", "en", "es", "zh"]
COLS = ["dataset", "xling_id", "lang"]


@st.composite
def tables(draw):
    """1-2 datasets, fully or partially parallel, 3-30 ids each."""
    rows = []
    for d in range(draw(st.integers(1, 2))):
        full = draw(st.booleans())
        for i in range(draw(st.integers(3, 30))):
            langs = LANGS if full else draw(
                st.lists(st.sampled_from(LANGS), min_size=1, max_size=5, unique=True))
            rows += [(f"ds{d}", f"q{i}", lg) for lg in langs]
    return pd.DataFrame(rows, columns=COLS)


def _parallel(n_ids: int, langs=LANGS, dataset="xq") -> pd.DataFrame:
    return pd.DataFrame([(dataset, str(i), lg) for i in range(n_ids) for lg in langs], columns=COLS)


def _feasible(table: pd.DataFrame, strategy: str, alpha: float, bs: int) -> bool:
    """Independent statement of when the sampler can build every batch type it needs."""
    mono = strategy in ("x-x-mono", "en-en") or (strategy == "hybrid" and alpha > 0)
    cross = strategy == "x-y" or (strategy == "hybrid" and alpha < 1)
    any_en = False
    for _, g in table.groupby("dataset"):
        per_lang = g.groupby("lang")["xling_id"].nunique()
        if strategy == "en-en":
            if "en" not in per_lang:
                continue
            any_en = True
            per_lang = per_lang[["en"]]
        if mono and per_lang.max() < bs:
            return False
        if cross and (g.groupby("xling_id")["lang"].nunique() >= 2).sum() < bs:
            return False
        if strategy in ("x-x", "multitask") and g["xling_id"].nunique() < bs:
            return False
    return any_en or strategy != "en-en"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table=tables(), strategy=st.sampled_from(STRATEGIES), bs=st.sampled_from([2, 4, 6, 8]),
       alpha=st.floats(0, 1), seed=st.integers(0, 2**31), world=st.sampled_from([1, 2]))
def test_sampler_invariants(table, strategy, bs, alpha, seed, world):
    try:
        samplers = [HybridBatchSampler(table, strategy, bs, alpha, seed, rank=r, world_size=world)
                    for r in range(world)]
    except HybridError as exc:
        assert not _feasible(table, strategy, alpha, bs), str(exc)
        no_parallel = any(g.groupby("xling_id")["lang"].nunique().max() < 2
                          for _, g in table.groupby("dataset"))
        assert ("--batch-size" in str(exc) or "en-en" in str(exc)
                or (no_parallel and "has rows in two languages" in str(exc))), str(exc)
        return
    assert _feasible(table, strategy, alpha, bs)
    s = samplers[0]
    langs_of = {(d, x): set(g["lang"]) for (d, x), g in table.groupby(["dataset", "xling_id"])}
    ids_per_lang = table.groupby(["dataset", "lang"])["xling_id"].nunique().to_dict()
    # len() is exact and the same on every rank
    assert {len(r) for r in samplers} == {len(s)} and len(s) >= 1
    for epoch in (0, 1):
        plan = s.epoch_plan(epoch)
        assert len(plan) == len(s)
        for r in samplers:
            r.set_epoch(epoch)
        local = [list(r) for r in samplers]
        for i, batch in enumerate(plan):
            assert batch.step == epoch * len(s) + i
            ids = [p.xling_id for p in batch.pairs]
            assert len(ids) == bs and len(set(ids)) == bs  # no xling_id twice
            for p in batch.pairs:  # languages exist for that id (partially parallel data)
                assert {p.q_lang, p.p_lang} <= langs_of[(batch.dataset, p.xling_id)]
            if batch.type == "mono":
                assert {p.q_lang for p in batch.pairs} | {p.p_lang for p in batch.pairs} == {batch.language}
                assert ids_per_lang[(batch.dataset, batch.language)] >= bs
            elif batch.type == "cross":
                assert all(p.q_lang != p.p_lang for p in batch.pairs)
            elif batch.type == "mixed":  # multitask: no structure (tests/test_sampling_multitask.py)
                assert strategy == "multitask"
            else:
                assert batch.type == "same" and all(p.q_lang == p.p_lang for p in batch.pairs)
            expect = {"x-x-mono": {"mono"}, "en-en": {"mono"}, "x-y": {"cross"}, "x-x": {"same"},
                      "hybrid": {"mono", "cross"}, "multitask": {"mixed"}}[strategy]
            assert batch.type in expect
            if strategy == "en-en":
                assert batch.language == "en"
            # the ranks' slices are disjoint, contiguous and rebuild the global batch
            slices = [loc[i] for loc in local]
            assert all(len(sl.pairs) == bs // world for sl in slices)
            assert all(sl.type == batch.type and sl.language == batch.language for sl in slices)
            assert sum((sl.pairs for sl in slices), ()) == batch.pairs
    # deterministic for (seed, epoch)
    again = HybridBatchSampler(table, strategy, bs, alpha, seed)
    assert again.epoch_plan(1) == s.epoch_plan(1) and again.epoch_plan(0) == s.epoch_plan(0)


def _bound(n: int, p: float) -> float:
    return 5 * math.sqrt(n * p * (1 - p)) + 1e-9


@settings(max_examples=15, deadline=None)
@given(alpha=st.floats(0, 1), seed=st.integers(0, 1000))
def test_mono_share_matches_alpha(alpha, seed):
    s = HybridBatchSampler(_parallel(40), "hybrid", 8, alpha, seed)
    batches = list(s.stream(0, 400))
    mono = sum(b.type == "mono" for b in batches)
    assert abs(mono - 400 * alpha) <= _bound(400, alpha)
    if alpha in (0.0, 1.0):
        assert mono == 400 * alpha


def test_mono_language_uniform_and_dataset_proportional():
    table = pd.concat([_parallel(30, dataset="small"), _parallel(90, dataset="big")])
    s = HybridBatchSampler(table, "x-x-mono", 8, seed=3)
    batches = list(s.stream(0, 1500))
    n = len(batches)
    big = sum(b.dataset == "big" for b in batches)
    assert abs(big - 0.75 * n) <= _bound(n, 0.75)
    counts = Counter(b.language for b in batches)
    assert set(counts) == set(LANGS)
    assert all(abs(c - n / 5) <= _bound(n, 0.2) for c in counts.values())


def test_languages_with_too_few_ids_are_not_mono_languages():
    table = pd.concat([_parallel(20, ["en", "de"]), _parallel(3, ["th"])])
    s = HybridBatchSampler(table, "x-x-mono", 8)
    assert s.languages == {"xq": ["de", "en"]} and s.excluded_languages == {"xq": ["th"]}
    assert {b.language for b in s.stream(0, 50)} == {"de", "en"}


def test_an_epoch_does_not_repeat_ids_while_unused_ones_remain():
    s = HybridBatchSampler(_parallel(50), "x-y", 8, seed=1)
    ids = [p.xling_id for b in s.epoch_plan(0) for p in b.pairs]
    assert len(ids) == 48 and len(set(ids)) == 48
    assert s.epoch_plan(1) != s.epoch_plan(0)


@pytest.mark.parametrize("kwargs, message", [
    ({"alpha": 1.5}, "--alpha"),
    ({"alpha": -0.1}, "--alpha"),
    ({"alpha": float("nan")}, "--alpha"),
    ({"strategy": "mono"}, "--strategy"),
    ({"batch_size": 1}, "--batch-size"),
    ({"batch_size": 64}, "--batch-size: 64 > unique ids"),
    ({"batch_size": 6, "world_size": 4}, "not divisible"),
])
def test_errors_are_one_line(kwargs, message):
    with pytest.raises(HybridError, match=message) as exc:
        HybridBatchSampler(_parallel(20), **kwargs)
    assert "\n" not in str(exc.value)


def test_en_en_needs_english_and_bad_tables_fail():
    with pytest.raises(HybridError, match="en-en"):
        HybridBatchSampler(_parallel(20, ["de", "fr"]), "en-en", 4)
    with pytest.raises(HybridError, match="duplicate"):
        HybridBatchSampler(pd.concat([_parallel(5), _parallel(1)]), "x-y", 2)
    with pytest.raises(HybridError, match="missing columns"):
        HybridBatchSampler(_parallel(5).drop(columns="lang"), "x-y", 2)
