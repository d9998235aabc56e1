"""MIRACL through `datasets` on a local fixture in the Hub layout, streamed corpus chunks,
'hybrid evaluate --benchmark miracl|trec' end to end, and the run files of MIRACL and of a
LAReQA benchmark ('--trec') checked with ir_measures."""

import json
from pathlib import Path

import ir_measures
import numpy as np
import pandas as pd
import pytest
from ir_measures import AP, RR, R, nDCG

from hybrid.cli import main
from hybrid.data.miracl import read_miracl
from hybrid.errors import HybridError
from hybrid.evaluation.ir import retrieve, runs_agree
from hybrid.evaluation.trec import read_qrels

FIXTURE = Path(__file__).parent / "fixtures" / "miracl"


def test_reader_streams_the_corpus_in_chunks():
    de, sw = read_miracl(FIXTURE, ["de", "sw"])
    assert (de.name, sw.name) == ("de", "sw")
    assert len(de.queries) == 8 and de.qrels["relevance"].isin([0, 1]).all()
    chunks = list(de.corpus_chunks(7))
    assert [len(c) for c in chunks] == [7] * 5 + [5]  # 40 passages across two .jsonl.gz files
    docs = pd.concat(chunks)
    assert docs["docid"].is_unique and docs["docid"].iloc[0] == "0#0"
    first = docs["text"].iloc[0]
    assert first.split(" ", 1)[1].startswith(first.split(" ", 1)[0])  # "title text"
    with pytest.raises(HybridError, match="not a MIRACL language"):
        read_miracl(FIXTURE, ["el"])
    with pytest.raises(HybridError, match="missing"):
        read_miracl(FIXTURE, ["ar"])


def test_chunking_does_not_change_the_run(tiny):
    """Chunk size and index kind leave the run as it is, up to the encoder's stated score
    noise (`SCORE_ATOL`: other batch mates, other kernel shapes); the index kind alone
    changes nothing (the same vectors, scores recomputed exactly)."""
    (de,) = read_miracl(FIXTURE, ["de"])
    kw = {"depth": 12, "progress": False}
    a, st = retrieve(tiny, de, chunk_size=15, **kw)
    b, _ = retrieve(tiny, de, **kw)  # one chunk; its embeddings are cached for the next tests
    c, _ = retrieve(tiny, de, index="hnsw", **kw)
    assert st == {**st, "documents": 40, "chunks": 3}
    assert len(a) == len(b) == 8 * 12
    assert runs_agree(a, b) == [] and runs_agree(b, a) == []
    assert b.equals(c)
    assert (a.groupby("qid")["score"].diff().dropna() <= 0).all()


def _run(rows):
    return pd.DataFrame(rows, columns=["qid", "docid", "score"])


def test_runs_agree_tells_noise_from_a_changed_run():
    a = _run([("q", "x", 0.9), ("q", "y", 0.5), ("q", "z", 0.40000)])
    assert runs_agree(a, a) == []
    # Scores within the tolerance, a near tie swapped, a near tie at the cut-off: agree.
    noise = _run([("q", "x", 0.9 + 4e-6), ("q", "y", 0.5), ("q", "w", 0.400004)])
    assert runs_agree(a, noise) == []
    swapped = _run([("q", "y", 0.9), ("q", "x", 0.5), ("q", "z", 0.4)])
    assert any("swap" in p for p in runs_agree(a, swapped))
    moved = _run([("q", "x", 0.9), ("q", "y", 0.5001), ("q", "z", 0.4)])
    assert runs_agree(a, moved) == ["q/y: score 0.5 vs 0.5001"]
    cut = _run([("q", "x", 0.9), ("q", "y", 0.5), ("q", "w", 0.3)])
    assert len(runs_agree(a, cut)) == 2  # z and w: each far from the other run's cut-off
    assert runs_agree(a, _run([("p", "x", 0.9)])) == ["the runs have different queries"]
    assert runs_agree(a, a.iloc[:2]) == ["q: 3 vs 2 documents"]


def test_miracl_cli_end_to_end_matches_ir_measures(tiny, tmp_path):
    out = tmp_path / "m"
    assert main(["evaluate", "--model", str(tiny), "--benchmark", "miracl", "--source",
                 str(FIXTURE), "--languages", "de,sw", "--out", str(out), "--trec"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["languages"] == ["de", "sw"] and set(m["summary"]) == {"mono"}
    assert m["counts"] == {"de": {"queries": 6, "skipped": 2}, "sw": {"queries": 6, "skipped": 2}}
    assert m["meta"]["collections"]["de"]["documents"] == 40
    assert m["summary"]["mono"]["ndcg@10"] == pytest.approx(
        np.mean([m["settings"][x]["ndcg@10"] for x in ("de", "sw")]))
    qrels = read_qrels(out / "qrels.trec")
    assert len(qrels) == 2 * 16 and qrels["qid"].str.startswith(("de/", "sw/")).all()
    judged = set(qrels.loc[qrels["relevance"] > 0, "qid"])
    q = [x for x in ir_measures.read_trec_qrels(str(out / "qrels.trec")) if x.query_id in judged]
    r = list(ir_measures.read_trec_run(str(out / "run.trec")))
    names = {"ndcg@10": nDCG @ 10, "mrr@10": RR @ 10, "r@100": R @ 100, "map": AP}
    for lang in ("de", "sw"):
        per = {k: [] for k in names}
        for x in ir_measures.iter_calc(list(names.values()), q, r):
            if x.query_id.startswith(lang + "/"):
                per[next(k for k, v in names.items() if v == x.measure)].append(x.value)
        for k, vals in per.items():
            assert len(vals) == 6
            assert m["settings"][lang][k] == pytest.approx(np.mean(vals), abs=1e-9), (lang, k)
    assert pd.read_parquet(out / "retrieved.parquet").groupby("qid").size().eq(40).all()
    assert "| de |" in (out / "report.md").read_text()

    # The same German data as a TREC-style directory gives the same figures.
    trec_dir = tmp_path / "collection"
    trec_dir.mkdir()
    (de,) = read_miracl(FIXTURE, ["de"])
    (trec_dir / "queries.tsv").write_text("".join(f"{a}\t{b}\n" for a, b in de.queries.values))
    lines = [json.dumps({"_id": d, "text": t}) for c in de.corpus_chunks(100)
             for d, t in c[["docid", "text"]].values]
    (trec_dir / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    (trec_dir / "qrels.txt").write_text("".join(f"{a} 0 {b} {c}\n" for a, b, c in de.qrels.values))
    out2 = tmp_path / "t"
    assert main(["evaluate", "--model", str(tiny), "--benchmark", "trec", "--source",
                 str(trec_dir), "--out", str(out2)]) == 0
    m2 = json.loads((out2 / "metrics.json").read_text())
    assert m2["settings"]["collection"] == m["settings"]["de"] and set(m2["summary"]) == {"all"}


def test_bad_sources_fail_in_one_line(tiny, tmp_path, capsys):
    out = tmp_path / "x"
    assert main(["evaluate", "--model", str(tiny), "--benchmark", "trec", "--out", str(out)]) == 2
    assert main(["evaluate", "--model", str(tiny), "--benchmark", "miracl", "--source",
                 str(tmp_path / "nope"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("error: --source: trec needs") and "not a directory" in err[1]
    assert not out.exists()


def test_lareqa_run_file_agrees_with_the_exact_matrix(tiny, tmp_path, mlqa_dir):
    """'--trec' on a LAReQA benchmark: the pooled top-10 run and the qrels, read back by
    ir_measures, give each X-multi setting's R@10 (exact ranks <= 10 = in the top 10)."""
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(tiny), "--benchmark", "mlqa-r", "--source",
                 str(mlqa_dir), "--languages", "en,de", "--out", str(out), "--trec"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    qrels = list(ir_measures.read_trec_qrels(str(out / "qrels.trec")))
    run = list(ir_measures.read_trec_run(str(out / "run.trec")))
    assert {r.query_id for r in run} == {q.query_id for q in qrels}
    for lang in ("en", "de"):
        values = [x.value for x in ir_measures.iter_calc([R @ 10], qrels, run)
                  if x.query_id.startswith(lang + "/")]
        assert np.mean(values) == pytest.approx(m["settings"][f"{lang}-multi"]["r@10"], abs=1e-9)
