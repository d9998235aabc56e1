"""The parallel QA table from each source, through `hybrid data pairs`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hybrid.cli import main
from hybrid.data import article_split, read_lareqa
from hybrid.data.pairs import PAIRS_COLUMNS, load_pairs
from hybrid.errors import HybridError

FIXTURES = Path(__file__).parent / "fixtures" / "data"


def run_pairs(out, capsys, *specs, extra=()):
    argv = ["data", "pairs", "--out", str(out), *extra]
    for s in specs:
        argv += ["--source", s]
    rc = main(argv)
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    return cap.out, cap.err, json.loads((out / "pairs_meta.json").read_text())


def test_xquad_r_train_split(xquad_dir, tmp_path, capsys):
    stdout, _, meta = run_pairs(tmp_path, capsys, f"xquad-r:{xquad_dir}?langs=en,th&hard_negatives=2",
                                extra=["--split-seed", "3", "--heldout-fraction", "0.25"])
    df = load_pairs(tmp_path)
    b = read_lareqa(xquad_dir, "xquad-r", ["en", "th"])
    train, heldout = article_split(b, heldout_fraction=0.25, seed=3)
    split = meta["sources"][0]["split"]
    assert set(split["train_articles"]) == train and set(split["heldout_articles"]) == heldout
    assert len(heldout) == 12
    q = b.questions
    train_ids = set(q[q["article"].isin(train)]["xling_id"])
    assert set(df["xling_id"]) == train_ids
    n = len(train_ids)
    assert meta["rows_per_dataset_lang"] == {"xquad-r": {"en": n, "th": n}}
    assert f"xquad-r: {2 * n} rows (en={n} th={n})" in stdout
    assert (df["dataset"] == "xquad-r").all()
    # positive: the same-language answer sentence, found in its context; negatives from it too
    sentences = set(b.candidates["sentence"])
    assert df["positive"].isin(sentences).all()
    assert all(p in c for p, c in zip(df["positive"], df["context"], strict=True))
    assert all(len(h) <= 2 and p not in h and all(x in c for x in h)
               for p, h, c in zip(df["positive"], df["hard_negatives"], df["context"], strict=True))
    assert df["hard_negatives"].map(len).max() == 2


def test_parquet_schema(xquad_dir, tmp_path, capsys):
    run_pairs(tmp_path, capsys, f"squad:tt={FIXTURES / 'squad-tt'}")
    schema = pq.read_schema(tmp_path / "pairs.parquet")
    assert schema.names == PAIRS_COLUMNS
    hn = schema.field("hard_negatives").type
    assert pa.types.is_list(hn) and hn.value_type == pa.string()
    assert not schema.field("question").nullable and schema.field("context").nullable


def test_squad_source_sentences_and_split_rule(tmp_path, capsys):
    _, err, meta = run_pairs(tmp_path, capsys, f"squad:tt={FIXTURES / 'squad-tt'}?hard_negatives=1")
    df = load_pairs(tmp_path).set_index(["xling_id", "lang"])
    # en/de have no `sentences`: split after . ! ? + space; zh gives its sentences
    assert df.loc[("q1", "en"), "positive"] == "It flows north!"
    assert df.loc[("q2", "en"), "positive"] == "Yes, in the Mediterranean."
    assert df.loc[("q2", "en"), "hard_negatives"] == ["The Nile is long."]
    assert df.loc[("q3", "de"), "positive"] == "Er liegt in Nepal."
    assert df.loc[("q1", "zh"), "positive"] == "它向北流！"
    assert df.loc[("q2", "zh"), "positive"] == "它流入地中海。"
    assert meta["rows_per_dataset_lang"] == {"tt": {"de": 3, "en": 4, "zh": 2}}
    assert "1 question id(s) in only one language" in err
    files = meta["sources"][0]["files"]
    for path, sha in files.items():
        assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == sha


def test_split_rule_handles_cjk_and_trailing_text():
    from hybrid.data.squad import split_sentences

    text = "A b. C d?  E\u3002F\uff01G"
    sents, spans = split_sentences(text)
    assert sents == ["A b.", "C d?", "E\u3002", "F\uff01", "G"]
    assert [text[s:e] for s, e in spans] == sents


def test_table_sources_jsonl_and_parquet(tmp_path, capsys):
    rows = [
        {"xling_id": "1", "lang": "en", "question": "q1", "positive": "p1"},
        {"xling_id": "1", "lang": "de", "question": "f1", "positive": "a1", "context": "c",
         "hard_negatives": ["n1", "n2"]},
    ]
    jl = tmp_path / "mine.jsonl"
    jl.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    pqf = tmp_path / "other.parquet"
    pd.DataFrame([dict(r, dataset="wiki") for r in rows]).to_parquet(pqf)
    stdout, _, meta = run_pairs(tmp_path / "out", capsys, f"table:{jl}?dataset=tt", f"table:{pqf}")
    df = load_pairs(tmp_path / "out")
    assert len(df) == 4 and sorted(set(df["dataset"])) == ["tt", "wiki"]
    de = df[(df["dataset"] == "tt") & (df["lang"] == "de")].iloc[0]
    assert de["hard_negatives"] == ["n1", "n2"] and de["context"] == "c"
    en = df[(df["dataset"] == "tt") & (df["lang"] == "en")].iloc[0]
    assert en["hard_negatives"] == [] and en["context"] is None
    assert "tt: 2 rows (de=1 en=1)" in stdout and "total: 4 rows" in stdout
    assert meta["sources"][0]["files"] == {str(jl): hashlib.sha256(jl.read_bytes()).hexdigest()}


def test_table_dataset_defaults_to_file_stem(tmp_path, capsys):
    f = tmp_path / "my-set.jsonl"
    f.write_text(json.dumps({"xling_id": "1", "lang": "en", "question": "q", "positive": "p"}))
    run_pairs(tmp_path / "out", capsys, f"table:{f}")
    assert list(load_pairs(tmp_path / "out")["dataset"]) == ["my-set"]


def test_mmarco_through_datasets(tmp_path, capsys):
    _, err, meta = run_pairs(tmp_path, capsys, f"mmarco:{FIXTURES / 'mmarco'}?langs=en,de&negatives=2")
    df = load_pairs(tmp_path).set_index(["xling_id", "lang"])
    # 4 query ids; passage 104 has no German translation in the fixture -> (14, de) skipped
    assert meta["rows_per_dataset_lang"] == {"mmarco": {"de": 3, "en": 4}}
    assert "mmarco de: skipped 1 query id(s)" in err
    assert df.loc[("11", "en"), "question"] == 'what is a "cat"'
    assert df.loc[("11", "de"), "positive"] == "Eine Katze ist ein kleines domestiziertes Raubtier."
    assert df.loc[("11", "en"), "hard_negatives"] == ["Dogs are loyal companions.", "Paris is the capital of France."]
    assert df.loc[("14", "en"), "hard_negatives"] == ["The ocean is salty.", "Ice melts at 0 degrees."]
    assert df["context"].isna().all()
    assert meta["sources"][0]["query_ids"] == 4 and len(meta["sources"][0]["files"]) == 5


def test_mmarco_limit_and_default_negatives(tmp_path, capsys):
    _, _, meta = run_pairs(tmp_path, capsys, f"mmarco:{FIXTURES / 'mmarco'}?langs=en&limit=2")
    df = load_pairs(tmp_path)
    assert list(df["xling_id"]) == ["11", "12"] and (df["hard_negatives"].map(len) == 0).all()


def test_mmarco_missing_language_file_is_an_error(tmp_path, capsys):
    rc = main(["data", "pairs", "--out", str(tmp_path / "o"), "--source", f"mmarco:{FIXTURES / 'mmarco'}?langs=fr"])
    err = capsys.readouterr().err
    assert rc == 2 and "french_queries.train.tsv: missing" in err and not (tmp_path / "o").exists()


def test_sources_combine(xquad_dir, tmp_path, capsys):
    stdout, _, meta = run_pairs(tmp_path, capsys, f"squad:tt={FIXTURES / 'squad-tt'}",
                                f"mmarco:{FIXTURES / 'mmarco'}?langs=en&limit=1")
    assert meta["rows"] == 10 and [s["kind"] for s in meta["sources"]] == ["squad", "mmarco"]
    assert "mmarco: 1 rows (en=1)" in stdout


def test_load_pairs_errors(tmp_path):
    with pytest.raises(HybridError, match="no pairs table"):
        load_pairs(tmp_path)
