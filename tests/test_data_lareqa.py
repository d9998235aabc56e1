"""XQuAD-R / MLQA-R as tables: published counts via the CLI, schema, qrels, partial parallelism."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re

import pandas as pd
import pytest

from hybrid.cli import main
from hybrid.data import load_benchmark, read_lareqa
from hybrid.data.lareqa import CANDIDATE_COLUMNS, QREL_COLUMNS, QUESTION_COLUMNS

# Published XQuAD-R pool sizes (LAReQA paper / dataset README).
XQUAD_CANDIDATES = dict(ar=1222, de=1276, el=1234, en=1180, es=1215, hi=1244, ru=1219, th=852,
                        tr=1167, vi=1209, zh=1196)


@pytest.fixture(scope="module")
def prepared(xquad_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("xquad") / "bench"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["data", "prepare", "--benchmark", "xquad-r", "--source", str(xquad_dir), "--out", str(out)])
    return rc, buf.getvalue(), out


@pytest.fixture(scope="module")
def xquad(prepared):
    return load_benchmark(prepared[2])


def test_prepare_cli_gives_published_counts(prepared, xquad):
    rc, stdout, out = prepared
    assert rc == 0
    counts = xquad.counts()
    assert counts["questions"] == {lang: 1190 for lang in XQUAD_CANDIDATES}
    assert counts["candidates"] == XQUAD_CANDIDATES
    assert counts["total_questions"] == 13090 and counts["total_candidates"] == 13014
    assert counts["xling_ids"] == 1190 and counts["articles"] == 48
    for lang, n in XQUAD_CANDIDATES.items():
        assert re.search(rf"^{lang}\s+1190\s+{n}$", stdout, re.M), stdout
    assert re.search(r"^total\s+13090\s+13014$", stdout, re.M)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["counts"]["candidates"] == XQUAD_CANDIDATES


def test_meta_records_sha256_of_each_source(prepared, xquad_dir):
    meta = json.loads((prepared[2] / "meta.json").read_text())
    for lang in XQUAD_CANDIDATES:
        want = hashlib.sha256((xquad_dir / f"{lang}.json").read_bytes()).hexdigest()
        assert meta["sources"][lang]["sha256"] == want


def test_schema_and_ids(xquad):
    assert list(xquad.questions.columns) == QUESTION_COLUMNS
    assert list(xquad.candidates.columns) == CANDIDATE_COLUMNS
    assert list(xquad.qrels.columns) == QREL_COLUMNS
    q, c = xquad.questions, xquad.candidates
    assert q["qid"].is_unique and c["cid"].is_unique
    assert (q["qid"] == q["lang"] + "/" + q["xling_id"]).all()
    assert (c["cid"] == c["lang"] + "/" + c["context_id"].astype(str) + "/" + c["position"].astype(str)).all()
    assert c["context_id"].dtype == "int64" and c["position"].dtype == "int64"
    assert set(xquad.qrels["qid"]) == set(q["qid"]) and set(xquad.qrels["cid"]) <= set(c["cid"])


def test_duplicate_sentences_stay_distinct_candidates(xquad):
    c = xquad.candidates
    zh = c[c["lang"] == "zh"]
    # zh repeats a sentence inside one paragraph; the published 1196 counts occurrences.
    assert zh.duplicated(["context_id", "sentence"]).sum() >= 1
    assert len(zh) == 1196


def test_every_question_has_its_answer_in_every_language(xquad):
    r = xquad.qrels
    per_q = r.groupby("qid")["cid"].apply(lambda s: sorted(x.split("/")[0] for x in s))
    assert (per_q.map(len) == 11).all()
    assert all(langs == sorted(XQUAD_CANDIDATES) for langs in per_q)
    # the same xling_id points at the same answers whatever the question language
    r = r.assign(xid=r["qid"].str.split("/", n=1).str[1])
    assert (r.groupby("xid")["cid"].nunique() == 11).all()


def test_answer_sentence_span_contains_answer_start(xquad, xquad_dir):
    raw = json.loads((xquad_dir / "en.json").read_text(encoding="utf-8"))
    starts = {qa["id"]: (p["context"], qa["answers"][0]["answer_start"], qa["answers"][0]["text"])
              for a in raw["data"] for p in a["paragraphs"] for qa in p["qas"]}
    mono = xquad.qrels[xquad.qrels["qid"].str.startswith("en/") & xquad.qrels["cid"].str.startswith("en/")]
    cand = xquad.candidates.set_index("cid")
    assert len(mono) == 1190
    for qid, cid in mono.itertuples(index=False):
        context, start, text = starts[qid[3:]]
        row = cand.loc[cid]
        assert row["context"] == context
        begin = context.index(row["sentence"])
        assert begin <= start < begin + len(row["sentence"])


def test_articles_are_consistent_across_languages(xquad):
    q = xquad.questions
    assert (q.groupby("xling_id")["article"].nunique() == 1).all()
    assert (q.groupby("article")["lang"].nunique() == 11).all()
    c = xquad.candidates
    # a parallel paragraph (same context_id in every language) belongs to one article
    assert (c.groupby("context_id")["article"].nunique() == 1).all()


def test_subset_by_language_and_article(xquad):
    arts = xquad.articles[:5]
    s = xquad.subset(articles=arts, languages=["en", "de"])
    assert set(s.questions["lang"]) == {"en", "de"} and set(s.questions["article"]) == set(arts)
    assert set(s.candidates["article"]) == set(arts)
    langs = set(s.qrels["cid"].str.split("/").str[0]) | set(s.qrels["qid"].str.split("/").str[0])
    assert langs == {"en", "de"}
    assert (s.qrels.groupby("qid").size() == 2).all()
    assert s.meta["counts"]["total_questions"] == len(s.questions)


def test_roundtrip_write_and_load(xquad, tmp_path):
    from hybrid.data import write_benchmark

    small = xquad.subset(languages=["th"])
    write_benchmark(small, tmp_path / "b")
    back = load_benchmark(tmp_path / "b")
    for name in ("questions", "candidates", "qrels"):
        pd.testing.assert_frame_equal(getattr(back, name), getattr(small, name))
    assert back.languages == ["th"] and back.name == "xquad-r"


def test_mlqa_r_partially_parallel(mlqa_dir, tmp_path, capsys):
    assert main(["data", "prepare", "--benchmark", "mlqa-r", "--source", str(mlqa_dir),
                 "--out", str(tmp_path / "m")]) == 0
    b = load_benchmark(tmp_path / "m")
    raw = {lang: json.loads((mlqa_dir / f"{lang}.json").read_text(encoding="utf-8")) for lang in b.languages}
    ids = {lang: {qa["id"] for a in d["data"] for p in a["paragraphs"] for qa in p["qas"]} for lang, d in raw.items()}
    n_sent = {lang: sum(len(p["sentences"]) for a in d["data"] for p in a["paragraphs"]) for lang, d in raw.items()}
    assert b.counts()["candidates"] == n_sent
    assert b.counts()["questions"] == {lang: len(v) for lang, v in ids.items()}
    langs_per_id = b.questions.groupby("xling_id")["lang"].nunique()
    assert langs_per_id.between(2, 4).all() and langs_per_id.nunique() > 1
    # pooled qrels: one answer per language that has the id; mono: exactly one
    per_q = b.qrels.groupby("qid").size()
    expect = b.questions.set_index("qid")["xling_id"].map(langs_per_id)
    assert (per_q.sort_index() == expect.sort_index()).all()
    mono = b.qrels[b.qrels["qid"].str[:2] == b.qrels["cid"].str[:2]]
    assert mono["qid"].is_unique and len(mono) == len(b.questions)
    assert (b.questions.groupby("xling_id")["article"].nunique() == 1).all()
    assert "en" in capsys.readouterr().out


def test_languages_option_limits_the_benchmark(mlqa_dir):
    b = read_lareqa(mlqa_dir, "mlqa-r", ["de", "zh"])
    assert b.languages == ["de", "zh"] and set(b.candidates["lang"]) == {"de", "zh"}
