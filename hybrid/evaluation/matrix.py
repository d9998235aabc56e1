"""The full settings matrix from embeddings: exact ranks, metrics, macro averages.

For each query language X one score matrix S = Q_X @ C^T against every candidate (sorted by
language into contiguous pools) is computed (`score_matrix`: in float64, rounded to
float32). For each query and each of its relevant items (score s), the number of candidates
scoring >= s is counted per language pool in one vectorised comparison; that count is the
item's exact rank in that pool (ties: see `hybrid.evaluation.metrics`), and the sum over
pools is its rank in the multilingual pool. Every setting's metrics then follow from those
counts, with no per-setting search.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from hybrid.errors import HybridError
from hybrid.evaluation.embeddings import Embeddings
from hybrid.evaluation.metrics import METRICS, language_bias, mean_metrics
from hybrid.evaluation.settings import KINDS, MULTI, relevant_languages, settings_for

# Bound on the boolean comparison block (queries x relevant x pool) per step.
_BLOCK = 8_000_000


def compute_matrix(benchmark, queries: Embeddings, candidates: Embeddings, *,
                   languages: Sequence[str] | None = None, progress: bool = True) -> dict:
    """Metrics of every setting of `benchmark` from precomputed embeddings.

    `benchmark` has DataFrames `.questions` (qid, lang, ...), `.candidates` (cid, lang, ...)
    and `.qrels` (qid, cid); `queries` / `candidates` hold an embedding for every qid / cid
    (any order). `languages` restricts the settings (and the multilingual pool) to those
    languages; default: the question languages, sorted.

    Returns {"languages", "summary": {kind: {metric: macro mean}, "language_bias"},
    "settings": {key: {metric: mean}}, "counts": {key: {"queries", "skipped"}},
    "skipped": {kind: total}}. A setting no question joins has metrics None and is left out
    of the averages.
    """
    qs, cs, qrels = benchmark.questions, benchmark.candidates, benchmark.qrels
    langs = list(languages) if languages else sorted(qs["lang"].unique())
    settings = settings_for(langs)
    qs = qs[qs["lang"].isin(langs)].reset_index(drop=True)
    cs = cs[cs["lang"].isin(langs)]
    order = np.argsort(pd.Categorical(cs["lang"], categories=langs).codes, kind="stable")
    cs = cs.iloc[order].reset_index(drop=True)
    missing = [x for x in langs if not (cs["lang"] == x).any()]
    if missing:
        raise HybridError(f"languages: no candidates in {','.join(missing)}")

    qvec = queries.aligned(qs["qid"], what="query embeddings")
    cvec = candidates.aligned(cs["cid"], what="candidate embeddings")
    bounds = np.searchsorted(pd.Categorical(cs["lang"], categories=langs).codes,
                             np.arange(len(langs) + 1))
    rel_cols = _relevant_columns(qs, cs, qrels)
    has = relevant_languages(qs, cs, qrels, langs).to_numpy()

    settings_out: dict[str, dict | None] = {}
    counts: dict[str, dict[str, int]] = {}
    for xi, x in enumerate(tqdm(langs, desc="settings matrix", unit="lang", disable=not progress)):
        rows = np.flatnonzero(qs["lang"].to_numpy() == x)
        cols = rel_cols[rows]  # [n, m], -1 = padding
        ge = _pool_counts(qvec[rows], cvec, cols, bounds)  # [n, m, L]
        valid = cols >= 0
        col_lang = np.searchsorted(bounds, np.where(valid, cols, 0), side="right") - 1
        for s in settings[xi * (len(langs) + 1):(xi + 1) * (len(langs) + 1)]:
            if s.pool_lang == MULTI:
                ranks = np.where(valid, ge.sum(axis=2), np.nan)
                joined = has[rows].any(axis=1)
            else:
                yi = langs.index(s.pool_lang)
                ranks = np.where(valid & (col_lang == yi), ge[:, :, yi], np.nan)
                joined = has[rows, yi]
            counts[s.key] = {"queries": int(joined.sum()), "skipped": int((~joined).sum())}
            if not joined.any():
                settings_out[s.key] = None
                continue
            m = mean_metrics(ranks[joined])
            if s.kind == "multi":
                bias = language_bias(ranks[joined])
                m["language_bias"] = None if np.isnan(bias) else bias
            settings_out[s.key] = m
    return {
        "languages": langs,
        "summary": _summary(settings, settings_out),
        "settings": settings_out,
        "counts": counts,
        "skipped": {k: sum(counts[s.key]["skipped"] for s in settings if s.kind == k) for k in KINDS},
    }


def score_matrix(queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Scores [n_queries, n_candidates]: dot products computed in float64 and rounded to
    float32. Float32 products differ in the last bit between BLAS paths (a matrix product
    vs one query at a time, block sizes, threads); through float64 the score of a pair does
    not depend on how it is computed, and identical texts keep exactly tied scores."""
    return (np.asarray(queries, dtype=np.float64) @ np.asarray(candidates, dtype=np.float64).T
            ).astype(np.float32)


def _relevant_columns(qs: pd.DataFrame, cs: pd.DataFrame, qrels: pd.DataFrame) -> np.ndarray:
    """[n_questions, max relevant] candidate row of each relevant item, padded with -1."""
    q = pd.Index(qs["qid"]).get_indexer(qrels["qid"])
    c = pd.Index(cs["cid"]).get_indexer(qrels["cid"])
    keep = (q >= 0) & (c >= 0)
    q, c = q[keep], c[keep]
    order = np.lexsort((c, q))
    q, c = q[order], c[order]
    n_rel = np.bincount(q, minlength=len(qs))
    out = np.full((len(qs), max(int(n_rel.max(initial=0)), 1)), -1, dtype=np.int64)
    start = np.concatenate([[0], np.cumsum(n_rel)[:-1]])
    out[q, np.arange(len(q)) - start[q]] = c
    return out


def _pool_counts(qvec: np.ndarray, cvec: np.ndarray, cols: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """ge[i, j, p] = #candidates of pool p scoring >= the score of relevant item cols[i, j]."""
    n, m = cols.shape
    n_pools = len(bounds) - 1
    cvec64 = cvec.astype(np.float64)
    ge = np.zeros((n, m, n_pools), dtype=np.int64)
    widest = int(np.diff(bounds).max())
    step = max(1, _BLOCK // max(1, m * widest))
    for a in range(0, n, step):
        scores = score_matrix(qvec[a:a + step], cvec64)  # [b, n_candidates]
        c = cols[a:a + step]
        rel = np.take_along_axis(scores, np.maximum(c, 0), axis=1)
        rel[c < 0] = np.inf  # padding counts nothing
        for p in range(n_pools):
            pool = scores[:, bounds[p]:bounds[p + 1]]
            ge[a:a + step, :, p] = np.count_nonzero(pool[:, None, :] >= rel[:, :, None], axis=2)
    return ge


def _summary(settings, values: dict[str, dict | None]) -> dict:
    """Macro averages over the settings of each kind (settings without queries left out)."""
    out: dict = {}
    for kind in KINDS:
        rows = [values[s.key] for s in settings if s.kind == kind and values[s.key] is not None]
        out[kind] = {m: (float(np.mean([r[m] for r in rows])) if rows else None) for m in METRICS}
    biases = [values[s.key]["language_bias"] for s in settings
              if s.kind == "multi" and values[s.key] is not None
              and values[s.key]["language_bias"] is not None]
    out["language_bias"] = float(np.mean(biases)) if biases else None
    return out
