"""The compact-index sampler draws the same batch stream as the former pandas one
(tests/sampling_reference.py, a verbatim copy): same table, strategy, alpha, seed and world
size give the same batches, on hypothesis tables (fully and partially parallel, one or two
datasets) and on the MLQA-R sample."""

from __future__ import annotations

import pandas as pd
import pytest
import sampling_reference as ref
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hybrid.errors import HybridError
from hybrid.sampling import STRATEGIES, HybridBatchSampler

LANGS = ["ar", "de", "en", "es", "zh"]
COLS = ["dataset", "xling_id", "lang"]


@st.composite
def tables(draw):
    """1-2 datasets, fully or partially parallel, 3-30 ids each, rows in any order."""
    rows = []
    for d in range(draw(st.integers(1, 2))):
        full = draw(st.booleans())
        for i in range(draw(st.integers(3, 30))):
            langs = LANGS if full else draw(
                st.lists(st.sampled_from(LANGS), min_size=1, max_size=5, unique=True))
            rows += [(f"ds{d}", f"q{i}", lg) for lg in langs]
    order = draw(st.permutations(range(len(rows))))
    return pd.DataFrame([rows[i] for i in order], columns=COLS)


def _same(table, strategy, bs, alpha, seed, world, epochs=(0, 1)):
    try:
        old = [ref.HybridBatchSampler(table, strategy, bs, alpha, seed, r, world) for r in range(world)]
    except HybridError as exc:
        with pytest.raises(HybridError) as new_exc:
            HybridBatchSampler(table, strategy, bs, alpha, seed, 0, world)
        assert str(new_exc.value) == str(exc)
        return False
    new = [HybridBatchSampler(table, strategy, bs, alpha, seed, r, world) for r in range(world)]
    assert len(new[0]) == len(old[0])
    assert new[0].excluded_languages == old[0].excluded_languages
    for epoch in epochs:
        assert ([b.to_json() for b in new[0].epoch_plan(epoch)]
                == [b.to_json() for b in old[0].epoch_plan(epoch)])
        for o, n in zip(old, new, strict=True):
            o.set_epoch(epoch)
            n.set_epoch(epoch)
            assert [b.to_json() for b in n] == [b.to_json() for b in o]
    return True


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table=tables(), strategy=st.sampled_from(STRATEGIES), bs=st.sampled_from([2, 4, 6, 8]),
       alpha=st.floats(0, 1), seed=st.integers(0, 2**31), world=st.sampled_from([1, 2]))
def test_same_stream_as_the_pandas_sampler(table, strategy, bs, alpha, seed, world):
    _same(table, strategy, bs, alpha, seed, world)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_same_stream_on_mlqa_r(mlqa_dir, tmp_path, strategy):
    """MLQA-R is partially parallel: ids exist in 1-7 of its languages."""
    table = _mlqa_table(mlqa_dir)
    assert table.groupby("xling_id")["lang"].nunique().nunique() > 1
    assert _same(table, strategy, 8, 0.5, 7, 2, epochs=(0, 2))


def _mlqa_table(mlqa_dir) -> pd.DataFrame:
    from hybrid.data.lareqa import read_lareqa
    from hybrid.data.sources import benchmark_pairs

    return benchmark_pairs(read_lareqa(mlqa_dir, "mlqa-r"), "mlqa-r")[COLS]
