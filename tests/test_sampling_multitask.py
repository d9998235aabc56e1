"""The multitask baseline sampler: datasets round-robin, pairs without mono/cross structure."""

from __future__ import annotations

from collections import Counter

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybrid.errors import HybridError
from hybrid.sampling import HybridBatchSampler

LANGS = ["ar", "de", "en", "es", "zh"]
COLS = ["dataset", "xling_id", "lang"]


def _table(sizes: dict[str, int], langs=LANGS) -> pd.DataFrame:
    return pd.DataFrame([(ds, f"{ds}-{i}", lg) for ds, n in sizes.items() for i in range(n)
                         for lg in langs], columns=COLS)


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(8, 40), min_size=1, max_size=3), seed=st.integers(0, 2**31),
       world=st.sampled_from([1, 2]))
def test_round_robin_datasets_and_no_repeated_ids(sizes, seed, world):
    table = _table({f"ds{i}": n for i, n in enumerate(sizes)})
    s = HybridBatchSampler(table, "multitask", 8, seed=seed, world_size=world)
    names = sorted(f"ds{i}" for i in range(len(sizes)))
    assert len(s) == sum(sizes) // 8
    for b in s.stream(0, 3 * len(s)):  # round-robin on the global step, across epochs
        assert b.type == "mixed" and b.language is None
        assert b.dataset == names[b.step % len(names)]
        ids = [p.xling_id for p in b.pairs]
        assert len(set(ids)) == 8 and all(x.startswith(b.dataset + "-") for x in ids)
    again = HybridBatchSampler(table, "multitask", 8, seed=seed, world_size=world)
    assert again.epoch_plan(1) == s.epoch_plan(1)


def test_language_pairs_are_unstructured_and_uniform():
    """Same- and cross-language pairs share batches; q and p languages independent, uniform."""
    s = HybridBatchSampler(_table({"xq": 60}), "multitask", 12, seed=5)
    batches = list(s.stream(0, 400))
    pairs = [p for b in batches for p in b.pairs]
    n = len(pairs)
    same = sum(p.q_lang == p.p_lang for p in pairs)
    assert abs(same - n / 5) <= 5 * (n * 0.2 * 0.8) ** 0.5  # P(same) = 1/k, k = 5
    mixed = [b for b in batches if len({p.q_lang == p.p_lang for p in b.pairs}) == 2]
    assert len(mixed) > 0.9 * len(batches)  # neither mono nor cross batches
    combos = Counter((p.q_lang, p.p_lang) for p in pairs)
    assert len(combos) == 25 and all(abs(c - n / 25) <= 5 * (n / 25) ** 0.5 + 1 for c in combos.values())


def test_partially_parallel_ids_use_only_their_languages():
    rows = [("ml", str(i), lg) for i in range(30) for lg in (["en", "de"] if i % 2 else ["zh"])]
    s = HybridBatchSampler(pd.DataFrame(rows, columns=COLS), "multitask", 10, seed=2)
    for b in s.stream(0, 60):
        for p in b.pairs:
            allowed = {"en", "de"} if int(p.xling_id) % 2 else {"zh"}
            assert {p.q_lang, p.p_lang} <= allowed
    # single-language ids are usable (as same-language pairs): all 30 ids count
    assert len(s) == 3


def test_a_dataset_smaller_than_the_batch_is_a_one_line_error():
    with pytest.raises(HybridError, match="--batch-size: 16 > unique ids in dataset 'b'") as exc:
        HybridBatchSampler(_table({"a": 40, "b": 10}), "multitask", 16)
    assert "\n" not in str(exc.value)
