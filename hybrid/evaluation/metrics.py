"""Retrieval metrics from the exact ranks of every relevant item.

Inputs are rank matrices: `ranks[q, j]` is the 1-based rank, in the whole pool, of the
j-th relevant item of query q; rows are padded with NaN where a query has fewer relevant
items than the widest row. Nothing is cut at a top-k: every relevant item's true rank is
known, so mAP is exact and R@100 counts every relevant item that made the top 100.

Ranks and ties (the one rule used everywhere): the rank of a relevant item with score s is
the number of pool items scoring >= s (the item itself included). Tied items all take the
last position of their tie group (pessimistic: a tie never flatters the model). With this
rule the AP below equals `sklearn.metrics.average_precision_score`, ties included.

Per-query metrics, for n relevant items with ranks r_1 <= ... <= r_n:
- AP       = (1/n) * sum_i hits(r_i) / r_i, hits(r) = #relevant items with rank <= r
- R@k      = #{i : r_i <= k} / n (the fraction of the relevant items found in the top k)
- MRR@10   = 1 / r_1 if r_1 <= 10 else 0
- nDCG@10  = sum_{r_i <= 10} 1/log2(r_i + 1) / sum_{i=1}^{min(n, 10)} 1/log2(i + 1); with
  graded `gains` g_i (TREC relevance levels): sum_{r_i <= 10} g_i/log2(r_i + 1) divided by
  the same sum over the gains sorted descending at ranks 1..10 (trec_eval's ndcg_cut.10:
  linear gains, judged documents only in the ideal)
- language bias (pooled settings) = r_n - r_1, the spread of the ranks of a question's
  parallel answers; defined for queries with at least two relevant items.
A setting's value is the mean over its queries.
"""

from __future__ import annotations

import numpy as np

#: The metrics every setting reports, in report order.
METRICS = ("map", "r@1", "r@10", "mrr@10", "ndcg@10", "r@100")


def _check(ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort each row ascending (NaN last); return sorted ranks, validity mask, counts."""
    r = np.asarray(ranks, dtype=np.float64)
    if r.ndim != 2:
        raise ValueError(f"ranks must be 2-D [queries, relevant], got shape {r.shape}")
    r = np.sort(r, axis=1)  # NaN sorts last
    valid = ~np.isnan(r)
    n = valid.sum(axis=1)
    if (n == 0).any():
        raise ValueError("every query needs at least one relevant item in the pool")
    if (r[valid] < 1).any():
        raise ValueError("ranks are 1-based")
    return r, valid, n


def per_query(ranks: np.ndarray, gains: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Each metric of `METRICS` for each query (arrays of length n_queries). `gains`
    (same shape as `ranks`, > 0 where a rank is given): graded relevance for nDCG@10;
    None: every relevant item has gain 1. The other metrics are binary either way."""
    r, valid, n = _check(ranks)
    # DCG is a sum over the relevant items, so gains stay in the caller's order, with their
    # own (unsorted) ranks; only the ideal needs the gains sorted.
    at, g = r, valid.astype(np.float64)
    if gains is not None:
        at = np.asarray(ranks, dtype=np.float64)
        g = np.asarray(gains, dtype=np.float64)
        if g.shape != at.shape:
            raise ValueError(f"gains shape {g.shape} differs from ranks shape {at.shape}")
        if (g[~np.isnan(at)] <= 0).any():
            raise ValueError("gains of relevant items must be > 0")
        g = np.where(np.isnan(at), 0.0, g)  # NaN: no item (a relevant item not found is inf)
    at = np.where(np.isnan(at), np.inf, at)  # never in the top 10
    filled = np.where(valid, r, np.inf)
    # hits(r_i): relevant items ranked at or above r_i (ties share the group's last rank).
    hits = (filled[:, None, :] <= filled[:, :, None]).sum(axis=2)
    ap = np.where(valid, hits / np.where(valid, r, 1.0), 0.0).sum(axis=1) / n

    def recall(k: int) -> np.ndarray:
        return (filled <= k).sum(axis=1) / n

    first = filled[:, 0]
    mrr = np.where(first <= 10, 1.0 / first, 0.0)
    dcg = np.where(at <= 10, g / np.log2(np.minimum(at, 10.0) + 1.0), 0.0).sum(axis=1)
    best = -np.sort(-g, axis=1)[:, :10]  # the ideal ranking: gains descending at ranks 1..10
    ideal = (best / np.log2(np.arange(2, best.shape[1] + 2))).sum(axis=1)
    return {
        "map": ap,
        "r@1": recall(1),
        "r@10": recall(10),
        "mrr@10": mrr,
        "ndcg@10": dcg / ideal,
        "r@100": recall(100),
    }


def mean_metrics(ranks: np.ndarray) -> dict[str, float]:
    """The mean over queries of each metric of `METRICS`."""
    return {k: float(v.mean()) for k, v in per_query(ranks).items()}


def language_bias(ranks: np.ndarray) -> float:
    """Mean over queries with >= 2 relevant items of (max rank - min rank); NaN if none."""
    r, valid, n = _check(ranks)
    keep = n >= 2
    if not keep.any():
        return float("nan")
    spread = np.nanmax(r[keep], axis=1) - np.nanmin(r[keep], axis=1)
    return float(spread.mean())


def ranks_from_scores(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """Ranks of the relevant items of one query: `scores` [pool], `relevant` bool [pool].

    A plain reference for the rule above (rank = #pool items scoring >= the item's score),
    used by tests and benchmarks; the matrix computes the same numbers in bulk.
    """
    s = np.asarray(scores)
    rel = s[np.asarray(relevant, dtype=bool)]
    return (s[None, :] >= rel[:, None]).sum(axis=1).astype(np.float64)
