"""Metrics from exact ranks: values known by construction, the tie rule, sklearn's AP."""

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from hybrid.evaluation.metrics import (
    METRICS,
    language_bias,
    mean_metrics,
    per_query,
    ranks_from_scores,
)

nan = float("nan")


def test_single_relevant_at_rank_one_is_perfect():
    assert mean_metrics(np.array([[1.0]])) == {m: 1.0 for m in METRICS}


def test_two_relevant_at_ranks_1_and_3():
    m = mean_metrics(np.array([[3.0, 1.0]]))  # order within a row does not matter
    assert m["map"] == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert m["r@1"] == 0.5 and m["r@10"] == 1.0 and m["r@100"] == 1.0
    assert m["mrr@10"] == 1.0
    ideal = 1 + 1 / math.log2(3)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(4)) / ideal)


def test_cutoffs_at_10_and_100():
    m = per_query(np.array([[11.0], [10.0], [100.0], [101.0]]))
    assert m["mrr@10"].tolist() == [0.0, 0.1, 0.0, 0.0]
    assert m["r@10"].tolist() == [0.0, 1.0, 0.0, 0.0]
    assert m["r@100"].tolist() == [1.0, 1.0, 1.0, 0.0]
    assert m["ndcg@10"][1] == pytest.approx(1 / math.log2(11))
    assert m["map"].tolist() == pytest.approx([1 / 11, 1 / 10, 1 / 100, 1 / 101])


def test_padding_and_ragged_rows():
    # Query 0: 3 relevant at 1, 2, 4; query 1: one relevant at 2 (row padded with NaN).
    ranks = np.array([[1.0, 2.0, 4.0], [2.0, nan, nan]])
    m = per_query(ranks)
    assert m["map"].tolist() == pytest.approx([(1 + 1 + 3 / 4) / 3, 0.5])
    assert m["r@1"].tolist() == pytest.approx([1 / 3, 0.0])
    assert m["mrr@10"].tolist() == pytest.approx([1.0, 0.5])


def test_ndcg_ideal_is_capped_at_ten_relevant():
    ranks = np.arange(1, 13, dtype=float)[None, :]  # 12 relevant items in the top 12
    m = mean_metrics(ranks)
    assert m["ndcg@10"] == pytest.approx(1.0)
    assert m["r@10"] == pytest.approx(10 / 12)
    assert m["map"] == pytest.approx(1.0)


def test_ties_are_pessimistic():
    # Relevant item tied with two others at the top: rank = 3 (all pool items >= its score).
    scores = np.array([0.9, 0.9, 0.9, 0.1])
    rel = np.array([False, True, False, False])
    assert ranks_from_scores(scores, rel).tolist() == [3.0]
    # Two relevant items tied at the top share the group's last rank.
    rel2 = np.array([True, True, False, False])
    assert ranks_from_scores(np.array([0.5, 0.5, 0.4, 0.1]), rel2).tolist() == [2.0, 2.0]
    m = mean_metrics(np.array([[2.0, 2.0]]))
    assert m["map"] == 1.0 and m["mrr@10"] == 0.5 and m["r@1"] == 0.0


@pytest.mark.parametrize("seed", range(5))
def test_ap_equals_sklearn_even_with_ties(seed):
    rng = np.random.default_rng(seed)
    for _ in range(40):
        n = int(rng.integers(2, 60))
        scores = rng.integers(0, 6, n).astype(np.float32)  # few values: many ties
        rel = rng.random(n) < 0.3
        if not rel.any():
            rel[int(rng.integers(n))] = True
        if rel.all():
            rel[0] = False
        ap = per_query(ranks_from_scores(scores, rel)[None, :])["map"][0]
        assert ap == pytest.approx(average_precision_score(rel, scores), abs=1e-12)


def test_language_bias():
    ranks = np.array([[1.0, 5.0, 3.0], [7.0, 2.0, nan], [4.0, nan, nan]])
    assert language_bias(ranks) == pytest.approx((4 + 5) / 2)  # one-answer rows left out
    assert math.isnan(language_bias(np.array([[4.0]])))


def test_rejects_queries_without_relevant_items_and_zero_ranks():
    with pytest.raises(ValueError, match="at least one relevant"):
        per_query(np.array([[1.0], [nan]]))
    with pytest.raises(ValueError, match="1-based"):
        per_query(np.array([[0.0]]))
