"""Ad-hoc retrieval over a large corpus (MIRACL, any TREC-style collection): streamed,
sharded encoding, FAISS top-k search, metrics from the retrieved lists against the qrels.

`retrieve(model, collection, depth=100, chunk_size=100_000, index="flat")`: queries are
encoded as kind "query"; the corpus is read in chunks of `chunk_size` passages
(`Collection.corpus_chunks`), each chunk encoded as kind "passage" with `encode_texts`
(Ray shards, cached per chunk), searched with a `DenseIndex` for every query's top `depth`,
and merged into the running top `depth`; only one chunk's texts and vectors are in memory
at a time. The retrieved items' scores are recomputed as float64 dot products rounded to
float32 (`score_matrix`'s rule), so they do not depend on the index kind. The chunk size
changes which passages share an encoding batch, so it moves scores by up to
`hybrid.encoder.SCORE_ATOL`: `runs_agree` states what two such runs have in common.

Metrics (`run_metrics`): a document is relevant when its qrels relevance is > 0; nDCG@10
takes the relevance as its gain (graded qrels, e.g. 1-3, give graded nDCG as trec_eval's
ndcg_cut.10; MIRACL's judgements are binary), the other metrics are binary. The rank of a
relevant document in the run is the number of the query's retrieved documents scoring >=
its score (the tool's pessimistic tie rule); a relevant document not retrieved has rank
infinity (it adds nothing to AP, R@k, MRR or nDCG but counts in their denominators and in
nDCG's ideal). Then `metrics.per_query`: nDCG@10, R@100, MRR@10, AP over the run (`map`),
R@1, R@10. Queries without a relevant document are skipped and counted. On runs without
tied scores these equal trec_eval's (tested against ir_measures, binary and graded).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from hybrid.errors import HybridError
from hybrid.evaluation.encode import encode_texts, encoding_backend, model_fingerprint
from hybrid.evaluation.metrics import METRICS, per_query
from hybrid.evaluation.results import check_out, macro, md_table, write_result
from hybrid.evaluation.search import DenseIndex
from hybrid.evaluation.trec import write_trec
from hybrid.io import write_parquet
from hybrid.raycluster import quiet_session

HEADLINE = ("ndcg@10", "r@100", "mrr@10", "map")


def retrieve(model, collection, *, depth: int = 100, chunk_size: int = 100_000,
             index: str = "flat", shards: int = 1, bf16: bool = False, batch_size: int = 64,
             cache=None, progress: bool = True,
             backend: str | None = "auto") -> tuple[pd.DataFrame, dict]:
    """(run table qid, rank, docid, score with the top `depth` per query; stats dict)."""
    if int(depth) < 1:
        raise HybridError(f"--depth: must be at least 1, not {depth}")
    kw = {"shards": shards, "bf16": bf16, "batch_size": batch_size, "cache": cache,
          "progress": progress, "backend": backend}
    q = collection.queries
    t = time.perf_counter()
    qemb = encode_texts(model, q["qid"], q["text"], "query", **kw)
    t_enc = time.perf_counter() - t
    q64 = qemb.vectors.astype(np.float64)
    best_s = np.full((len(q), 0), -np.inf, dtype=np.float32)
    best_d = np.empty((len(q), 0), dtype=object)
    n_docs, n_chunks, t_search = 0, 0, 0.0
    bar = tqdm(desc=f"{collection.name}: corpus", unit="passage", disable=not progress)
    for chunk in collection.corpus_chunks(chunk_size):
        t = time.perf_counter()
        emb = encode_texts(model, chunk["docid"], chunk["text"], "passage", **kw)
        t_enc += time.perf_counter() - t
        t = time.perf_counter()
        _, idx = DenseIndex(index).add(emb).search_arrays(qemb.vectors, depth)
        s = np.empty(idx.shape, dtype=np.float32)
        for a in range(0, len(idx), 256):  # bounded memory: [256, k, d] float64 at a time
            c = emb.vectors[np.maximum(idx[a:a + 256], 0)].astype(np.float64)
            s[a:a + 256] = np.einsum("qd,qkd->qk", q64[a:a + 256], c).astype(np.float32)
        s[idx < 0] = -np.inf
        best_s = np.concatenate([best_s, s], axis=1)
        best_d = np.concatenate([best_d, emb.ids.astype(object)[np.maximum(idx, 0)]], axis=1)
        order = np.argsort(-best_s, axis=1, kind="stable")[:, :depth]
        best_s = np.take_along_axis(best_s, order, axis=1)
        best_d = np.take_along_axis(best_d, order, axis=1)
        t_search += time.perf_counter() - t
        n_docs += len(chunk)
        n_chunks += 1
        bar.update(len(chunk))
    bar.close()
    if n_docs == 0:
        raise HybridError(f"{collection.name}: empty corpus")
    k = best_s.shape[1]
    keep = np.isfinite(best_s).ravel()
    run = pd.DataFrame({"qid": np.repeat(q["qid"].to_numpy(dtype=str), k)[keep],
                        "rank": np.tile(np.arange(1, k + 1), len(q))[keep],
                        "docid": best_d.ravel()[keep].astype(str),
                        "score": best_s.ravel()[keep]})
    return run, {"documents": n_docs, "chunks": n_chunks, "encode_seconds": round(t_enc, 3),
                 "search_seconds": round(t_search, 3)}


def runs_agree(a: pd.DataFrame, b: pd.DataFrame, atol: float | None = None) -> list[str]:
    """Where two runs (qid, docid, score; top-k lists of the same queries) differ by more
    than `atol` of score noise: [] when they agree. They agree when they have the same
    queries and list lengths; a document in both has scores within `atol`; a document in only
    one scores within `atol` of the other run's lowest retrieved score for that query (a near
    tie at the cut-off); and two documents in both are in the same order unless their scores
    are within 2 * `atol`. Used to check that chunking and index kind do not change a run.
    `atol` defaults to `hybrid.encoder.SCORE_ATOL`."""
    if atol is None:
        from hybrid.encoder import SCORE_ATOL as atol
    problems = []
    if set(a["qid"]) != set(b["qid"]):
        return ["the runs have different queries"]
    for qid, x in a.groupby("qid", sort=True):
        y = b[b["qid"] == qid]
        if len(x) != len(y):
            problems.append(f"{qid}: {len(x)} vs {len(y)} documents")
            continue
        both = x.merge(y, on="docid", suffixes=("_a", "_b"))
        far = both[(both["score_a"] - both["score_b"]).abs() > atol]
        problems += [f"{qid}/{d}: score {s:.9g} vs {t:.9g}"
                     for d, s, t in far[["docid", "score_a", "score_b"]].values]
        for only, other in ((x, y), (y, x)):
            alone = only[~only["docid"].isin(other["docid"])]
            cut = other["score"].min()
            problems += [f"{qid}/{d}: retrieved by one run only, score {s:.9g} vs cut-off {cut:.9g}"
                         for d, s in alone[["docid", "score"]].values if abs(s - cut) > atol]
        both = both.sort_values("score_a", ascending=False, kind="stable")
        rank_b = both["score_b"].rank(ascending=False, method="first").to_numpy()
        s = both["score_a"].to_numpy(np.float64)
        i, j = np.nonzero(np.triu(rank_b[:, None] > rank_b[None, :], k=1)
                          & (s[:, None] - s[None, :] > 2 * atol))
        problems += [f"{qid}: {both['docid'].iloc[p]} and {both['docid'].iloc[q]} swap places"
                     for p, q in zip(i, j, strict=True)]
    return problems


def run_metrics(run: pd.DataFrame, qrels: pd.DataFrame) -> tuple[dict, dict, pd.DataFrame]:
    """(mean metrics, {"queries", "skipped"}, per-query table) of a run against qrels (see
    the module docstring). `run` has qid, docid, score; `qrels` qid, docid, relevance."""
    rel = (qrels[qrels["relevance"] > 0].groupby(["qid", "docid"], as_index=False)["relevance"]
           .max())
    run_q = set(run["qid"])
    rel = rel[rel["qid"].isin(run_q)]
    if rel.empty:
        raise HybridError("qrels: no query of the run has a relevant document")
    run = run[["qid", "docid", "score"]]
    merged = rel.merge(run, on=["qid", "docid"], how="left")
    # rank = #retrieved items of the query scoring >= the relevant item's score
    by_q = {k: np.sort(v.to_numpy(np.float64)) for k, v in run.groupby("qid")["score"]}
    ranks = [float(len(by_q[qid]) - np.searchsorted(by_q[qid], s, side="left"))
             if not np.isnan(s) else np.inf
             for qid, s in zip(merged["qid"], merged["score"].astype(np.float64), strict=True)]
    merged = merged.assign(rank=ranks)
    qids = sorted(merged["qid"].unique())
    pos = {qid: i for i, qid in enumerate(qids)}
    width = int(merged.groupby("qid").size().max())
    mat = np.full((len(qids), width), np.nan)
    gains = np.zeros((len(qids), width))
    fill = np.zeros(len(qids), dtype=int)
    for qid, r, g in zip(merged["qid"], merged["rank"], merged["relevance"], strict=True):
        i = pos[qid]
        mat[i, fill[i]], gains[i, fill[i]] = r, g
        fill[i] += 1
    pq = per_query(mat, gains)
    table = pd.DataFrame({"qid": qids, **pq})
    return ({m: float(v.mean()) for m, v in pq.items()},
            {"queries": len(qids), "skipped": len(run_q) - len(qids)}, table)


def evaluate_ir(model, collections, out, *, benchmark: str = "trec", index: str = "flat",
                depth: int = 100, chunk_size: int = 100_000, trec: bool = False,
                shards: int = 1, bf16: bool = False, batch_size: int = 64, cache=None,
                progress: bool = True, backend: str | None = "auto") -> dict:
    """Retrieve the top `depth` for every query of each collection, score the runs against
    their qrels, and write retrieved.parquet (qid, rank, docid, score; qids prefixed
    "{collection}/" when there are several), with `trec` also run.trec and qrels.trec,
    report.md and last metrics.json into `out`. `summary["mono"]` (MIRACL) or
    `summary["all"]` is the macro mean over the collections. Returns the metrics dict."""
    from hybrid.model import resolve_model

    t0 = time.perf_counter()
    out = check_out(out)
    collections = list(collections)
    model_dir = resolve_model(model)
    settings, counts, stats, runs, qrels = {}, {}, {}, [], []
    with quiet_session(shards):
        for c in collections:
            run, st = retrieve(model_dir, c, depth=depth, chunk_size=chunk_size, index=index,
                               shards=shards, bf16=bf16, batch_size=batch_size, cache=cache,
                               progress=progress, backend=backend)
            m, n, _ = run_metrics(run, c.qrels)
            settings[c.name], counts[c.name], stats[c.name] = m, n, st
            pre = f"{c.name}/" if len(collections) > 1 else ""
            runs.append(run.assign(qid=pre + run["qid"]))
            qrels.append(c.qrels.assign(qid=pre + c.qrels["qid"]))
    run, qrel = pd.concat(runs, ignore_index=True), pd.concat(qrels, ignore_index=True)
    group = "mono" if benchmark == "miracl" else "all"
    metrics = {
        "summary": {group: macro(list(settings.values()), METRICS)},
        "settings": settings, "counts": counts,
        "languages": [c.meta["lang"] for c in collections if "lang" in c.meta],
        "search": {"index": index, "depth": depth, "chunk_size": chunk_size},
        "meta": {"model": str(model), "model_dir": str(model_dir),
                 "model_fingerprint": model_fingerprint(model_dir)[:16],
                 "benchmark": benchmark,
                 "collections": {c.name: {**c.meta, **stats[c.name],
                                          "queries": len(c.queries)} for c in collections},
                 "shards": shards, "bf16": bf16, "batch_size": batch_size,
                 "backend": encoding_backend(backend, bf16),
                 "seconds": {"total": round(time.perf_counter() - t0, 3)}},
    }
    write_parquet(out / "retrieved.parquet", run)
    if trec:
        write_trec(out, run, qrel, benchmark)
    write_result(metrics, render_ir(metrics), out)
    return metrics


def render_ir(metrics: dict) -> str:
    meta = metrics["meta"]
    group, summary = next(iter(metrics["summary"].items()))
    lines = [f"# Retrieval: {meta['model']} on {meta['benchmark']}", "",
             f"- top {metrics['search']['depth']} per query ({metrics['search']['index']} index); "
             "metrics from the retrieved lists against the qrels (relevance > 0), ties "
             "pessimistic", "", f"## Summary ({group}: macro mean over collections, x 100)", ""]
    lines += md_table(group, {"mean": summary}, HEADLINE, pct=True)
    rows = {k: {**(v or {}), **metrics["counts"][k],
                "documents": meta["collections"][k]["documents"]}
            for k, v in metrics["settings"].items()}
    lines += ["", "## Per collection (x 100)", ""]
    lines += md_table("collection", rows, (*HEADLINE, "r@1", "r@10", "queries", "skipped",
                                           "documents"), pct=True)
    return "\n".join(lines) + "\n"
