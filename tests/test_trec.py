"""TREC run/qrels files and run metrics, cross-checked against ir_measures (trec_eval)."""

import ir_measures
import numpy as np
import pandas as pd
import pytest
from ir_measures import AP, RR, R, nDCG

from hybrid.data.trec import read_trec_dir
from hybrid.errors import HybridError
from hybrid.evaluation.ir import run_metrics
from hybrid.evaluation.trec import read_qrels, read_run, write_qrels, write_run

MEASURES = {"ndcg@10": nDCG @ 10, "mrr@10": RR @ 10, "r@100": R @ 100, "map": AP}


def random_collection(seed: int, n_q: int = 60, n_docs: int = 400, depth: int = 100,
                      tie_every: int = 0, graded: bool = False):
    """A run (top `depth` of random scores) and qrels (binary, or `graded` 1-3) with judged
    non-relevant documents, relevant documents outside the run, and queries with nothing
    relevant."""
    rng = np.random.default_rng(seed)
    runs, qrels = [], []
    for q in range(n_q):
        scores = rng.random(n_docs).astype(np.float32)
        if tie_every:
            scores = np.round(scores * tie_every) / tie_every
        top = np.argsort(-scores, kind="stable")[:depth]
        runs.append(pd.DataFrame({"qid": f"q{q}", "rank": np.arange(1, depth + 1),
                                  "docid": [f"d{i}" for i in top], "score": scores[top]}))
        n_rel = 0 if q % 13 == 5 else int(rng.integers(1, 15))
        rel = rng.choice(n_docs, size=n_rel + 3, replace=False)
        qrels.append(pd.DataFrame({"qid": f"q{q}", "docid": [f"d{i}" for i in rel],
                                   "relevance": [*(rng.integers(1, 4, n_rel) if graded
                                                   else [1] * n_rel), 0, 0, 0]}))
    return pd.concat(runs, ignore_index=True), pd.concat(qrels, ignore_index=True)


def ir_measures_means(run: pd.DataFrame, qrels: pd.DataFrame, tmp_path) -> dict:
    write_run(run, tmp_path / "run.trec")
    write_qrels(qrels, tmp_path / "qrels.trec")
    judged = set(qrels.loc[qrels["relevance"] > 0, "qid"])  # trec_eval: queries with a relevant doc
    q = [x for x in ir_measures.read_trec_qrels(str(tmp_path / "qrels.trec")) if x.query_id in judged]
    r = list(ir_measures.read_trec_run(str(tmp_path / "run.trec")))
    per = {name: [] for name in MEASURES}
    inv = {v: k for k, v in MEASURES.items()}
    for m in ir_measures.iter_calc(list(MEASURES.values()), q, r):
        per[inv[m.measure]].append(m.value)
    return {k: float(np.mean(v)) for k, v in per.items()}


@pytest.mark.parametrize("seed", [0, 1])
def test_run_metrics_equal_ir_measures(seed, tmp_path):
    run, qrels = random_collection(seed)
    ours, counts, table = run_metrics(run, qrels)
    theirs = ir_measures_means(run, qrels, tmp_path)
    for name in MEASURES:
        assert ours[name] == pytest.approx(theirs[name], abs=1e-9), name
    assert counts == {"queries": 55, "skipped": 5}  # q5, q18, ... have nothing relevant
    assert len(table) == 55


def test_graded_qrels_give_trec_evals_graded_ndcg(tmp_path):
    """Relevance 1-3: nDCG@10 uses the levels as gains (ideal from the judged levels), as
    trec_eval's ndcg_cut.10; RR, R@100 and AP stay binary (relevance > 0)."""
    run, qrels = random_collection(5, graded=True)
    assert set(qrels["relevance"]) == {0, 1, 2, 3}
    ours, _, _ = run_metrics(run, qrels)
    theirs = ir_measures_means(run, qrels, tmp_path)
    for name in MEASURES:
        assert ours[name] == pytest.approx(theirs[name], abs=1e-9), name
    binary, _, _ = run_metrics(run, qrels.assign(relevance=(qrels["relevance"] > 0).astype(int)))
    assert binary["ndcg@10"] != pytest.approx(ours["ndcg@10"], abs=1e-6)  # the grades count
    assert binary["map"] == ours["map"] and binary["r@100"] == ours["r@100"]


def test_with_ties_the_tools_ranks_are_pessimistic(tmp_path):
    run, qrels = random_collection(3, tie_every=20)  # heavy ties
    ours, _, _ = run_metrics(run, qrels)
    theirs = ir_measures_means(run, qrels, tmp_path)
    for name in ("ndcg@10", "mrr@10", "map"):
        assert ours[name] <= theirs[name] + 1e-12
    assert ours["map"] < theirs["map"]


def test_files_round_trip_and_reject_bad_ids(tmp_path):
    run, qrels = random_collection(4, n_q=3, depth=5)
    write_run(run, tmp_path / "r.trec", tag="mine")
    back = read_run(tmp_path / "r.trec")
    assert back[["qid", "docid", "rank"]].equals(run[["qid", "docid", "rank"]])
    assert np.allclose(back["score"], run["score"]) and set(back["tag"]) == {"mine"}
    write_qrels(qrels, tmp_path / "q.trec")
    assert read_qrels(tmp_path / "q.trec").equals(qrels.reset_index(drop=True))
    with pytest.raises(HybridError, match="whitespace"):
        write_run(run.assign(docid="a b"), tmp_path / "x.trec")
    assert not (tmp_path / "x.trec").exists()
    (tmp_path / "bad.trec").write_text("q1 0 d1\n")
    with pytest.raises(HybridError, match=r"bad.trec:1: expected"):
        read_qrels(tmp_path / "bad.trec")
    (tmp_path / "bad.trec").write_text("q1 0 d1 1\nq1 0 d1 0\n")
    with pytest.raises(HybridError, match="repeated judgement"):
        read_qrels(tmp_path / "bad.trec")


def test_trec_dir_reader(tmp_path):
    (tmp_path / "queries.tsv").write_text("1\twhere is it\n2\twho\n")
    (tmp_path / "corpus.jsonl").write_text(
        '{"_id": "a", "title": "T", "text": "x y"}\n{"docid": "b", "text": "z"}\n'
        '{"_id": "c", "title": "", "text": "w"}\n')
    (tmp_path / "qrels.txt").write_text("1 0 a 1\n2 0 b 0\n")
    c = read_trec_dir(tmp_path)
    assert c.queries["qid"].tolist() == ["1", "2"]
    chunks = list(c.corpus_chunks(2))
    assert [len(x) for x in chunks] == [2, 1]
    assert pd.concat(chunks)["text"].tolist() == ["T x y", "z", "w"]
    (tmp_path / "qrels.txt").write_text("3 0 a 1\n")
    with pytest.raises(HybridError, match="'3' is not in queries.tsv"):
        read_trec_dir(tmp_path)
    (tmp_path / "queries.tsv").write_text("1 no tab\n")
    with pytest.raises(HybridError, match="queries.tsv:1: expected"):
        read_trec_dir(tmp_path)


def test_sources_respect_the_data_roots(tmp_path, monkeypatch):
    from hybrid.data.bitext import read_aligned
    from hybrid.data.miracl import read_miracl

    (tmp_path / "allowed").mkdir()
    monkeypatch.setenv("HYBRID_DATA_ROOTS", str(tmp_path / "allowed"))
    for read in (read_trec_dir, read_aligned, read_miracl):
        with pytest.raises(HybridError, match="outside the allowed data roots"):
            read(tmp_path)

