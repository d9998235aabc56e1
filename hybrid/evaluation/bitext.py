"""Bitext retrieval: a sentence in X retrieves its translation among all sentences of Y.

For each pair of a `hybrid.data.bitext.Bitext`, every source sentence is a query; the pool
is the *distinct* target sentences (identical texts would get identical embeddings and tie;
a pool of distinct texts keeps one copy), and the relevant item is the text of its aligned
translation. Both sides are encoded as kind "query" (the e5 convention for symmetric tasks:
`query: ` on both sides) through `encode_texts` (cached, sharded).

Ranks are exact over the whole pool with the tool's one tie rule (`hybrid.evaluation.
metrics`: rank = #pool items scoring >= the translation's score, scores from
`score_matrix`), so `accuracy@1` = R@1 (the translation is strictly the best match) and
`mrr@10` = MRR@10 of `metrics.per_query`. A pair's value is the mean over its source
sentences; `summary[direction]` is the macro mean over the pairs of that direction.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from hybrid.evaluation.encode import encode_texts, encoding_backend, model_fingerprint
from hybrid.evaluation.matrix import score_matrix
from hybrid.evaluation.metrics import per_query
from hybrid.evaluation.results import check_out, macro, md_table, write_result
from hybrid.evaluation.trec import write_trec
from hybrid.raycluster import quiet_session

BITEXT_METRICS = ("accuracy@1", "mrr@10")
KIND = "query"  # both sides (symmetric task, e5 convention)
RUN_DEPTH = 10
_BLOCK = 2048  # queries per score block


def pool(texts: list[str]) -> tuple[list[str], np.ndarray]:
    """(distinct texts in first-occurrence order, index of each input text among them)."""
    codes, uniques = pd.factorize(pd.Series(texts, dtype=object))
    return [str(t) for t in uniques], codes.astype(np.int64)


def pair_ranks(src: np.ndarray, tgt: np.ndarray, gold: np.ndarray, depth: int = RUN_DEPTH):
    """(ranks [n] of the gold target of each source row, top `depth` target rows [n, k],
    their scores [n, k]); exact, pessimistic ties."""
    ranks = np.empty(len(src), dtype=np.float64)
    k = min(depth, len(tgt))
    top = np.empty((len(src), k), dtype=np.int64)
    top_s = np.empty((len(src), k), dtype=np.float32)
    for a in range(0, len(src), _BLOCK):
        s = score_matrix(src[a:a + _BLOCK], tgt)
        g = s[np.arange(len(s)), gold[a:a + _BLOCK]]
        ranks[a:a + _BLOCK] = np.count_nonzero(s >= g[:, None], axis=1)
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(s, part, axis=1), axis=1, kind="stable")
        top[a:a + _BLOCK] = np.take_along_axis(part, order, axis=1)
        top_s[a:a + _BLOCK] = np.take_along_axis(s, top[a:a + _BLOCK], axis=1)
    return ranks, top, top_s


def evaluate_bitext(model, bitext, out, *, trec: bool = False, shards: int = 1,
                    bf16: bool = False, batch_size: int = 64, cache=None,
                    progress: bool = True, backend: str | None = "auto") -> dict:
    """Evaluate `model` on every pair of `bitext`; write report.md, with `trec` also
    run.trec (top 10 per source sentence, qid "{pair}/{line}") and qrels.trec, and last
    metrics.json into `out`. Returns the metrics dict."""
    from hybrid.model import resolve_model

    t0 = time.perf_counter()
    out = check_out(out)
    model_dir = resolve_model(model)
    kw = {"shards": shards, "bf16": bf16, "batch_size": batch_size, "cache": cache,
          "progress": progress, "backend": encoding_backend(backend, bf16)}
    vectors: dict[str, np.ndarray] = {}  # side -> vectors of its distinct texts
    pools: dict[str, tuple[list[str], np.ndarray]] = {}  # side -> (distinct texts, codes)
    settings: dict[str, dict] = {}
    counts: dict[str, dict] = {}
    runs, qrels = [], []
    t_enc = 0.0
    with quiet_session(shards):
        for p in bitext.pairs:
            t = time.perf_counter()
            for side in (p.src, p.tgt):  # each side's distinct texts are encoded once
                if side not in pools:
                    pools[side] = pool(bitext.sides[side])
                    uniq = pools[side][0]
                    lang = bitext.side_langs.get(side)  # None: inferred by a centered model
                    vectors[side] = encode_texts(model_dir, [f"{side}/u{i}" for i in range(len(uniq))],
                                                 uniq, KIND, langs=[lang] * len(uniq), **kw).vectors
            t_enc += time.perf_counter() - t
            gold = pools[p.tgt][1]
            src = vectors[p.src][pools[p.src][1]]  # every source line, duplicates included
            ranks, top, top_s = pair_ranks(src, vectors[p.tgt], gold)
            m = per_query(ranks[:, None])
            settings[p.key] = {"accuracy@1": float(m["r@1"].mean()),
                               "mrr@10": float(m["mrr@10"].mean())}
            counts[p.key] = {"queries": len(ranks), "pool": len(pools[p.tgt][0])}
            qids = np.array([f"{p.key}/{i}" for i in range(len(ranks))])
            runs.append(pd.DataFrame({
                "qid": np.repeat(qids, top.shape[1]),
                "rank": np.tile(np.arange(1, top.shape[1] + 1), len(qids)),
                "cid": np.char.add(f"{p.tgt}/u", top.ravel().astype(str)),
                "score": top_s.ravel()}))
            qrels.append(pd.DataFrame({"qid": qids, "cid": [f"{p.tgt}/u{g}" for g in gold],
                                       "relevance": 1}))
    directions = sorted({p.direction for p in bitext.pairs})
    summary = {d: macro([settings[p.key] for p in bitext.pairs if p.direction == d], BITEXT_METRICS)
               for d in directions}
    metrics = {
        "summary": summary, "settings": settings, "counts": counts,
        "languages": list(bitext.languages),
        "meta": {"model": str(model), "model_dir": str(model_dir),
                 "model_fingerprint": model_fingerprint(model_dir)[:16],
                 "benchmark": bitext.name, **bitext.meta, "kind": KIND,
                 "pairs": len(bitext.pairs), "shards": shards, "bf16": bf16, "backend": kw["backend"],
                 "batch_size": batch_size,
                 "seconds": {"encode": round(t_enc, 3),
                             "total": round(time.perf_counter() - t0, 3)}},
    }
    if trec:
        write_trec(out, pd.concat(runs, ignore_index=True), pd.concat(qrels, ignore_index=True),
                   bitext.name)
    write_result(metrics, render_bitext(metrics), out)
    return metrics


def render_bitext(metrics: dict) -> str:
    meta = metrics["meta"]
    lines = [f"# Bitext retrieval: {meta['model']} on {meta['benchmark']}", "",
             f"- source: `{meta.get('source')}`, directions: {meta.get('directions')}",
             "- a source sentence retrieves its translation among the distinct target "
             "sentences; both sides encoded with the query prefix; exact ranks, ties "
             "pessimistic", "", "## Summary (x 100, macro mean over pairs)", ""]
    lines += md_table("direction", metrics["summary"], BITEXT_METRICS, pct=True)
    rows = {k: {**v, **metrics["counts"][k]} for k, v in metrics["settings"].items()}
    lines += ["", "## Per pair (x 100)", ""]
    lines += md_table("pair", rows, (*BITEXT_METRICS, "queries", "pool"), pct=True)
    return "\n".join(lines) + "\n"
