"""Bad input: one-line errors naming the file and the problem, exit 2, nothing written."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from hybrid.cli import main


def lareqa_file(path, articles, **para_overrides):
    """Write a minimal LAReQA file: articles = [(title, [(qid, question, answer_sentence_index)])].

    Every paragraph has three sentences; the answer starts at its sentence's first char.
    """
    data = []
    for title, qas in articles:
        sents = [f"{title} one.", f"{title} two is here.", f"{title} three."]
        context = " ".join(sents)
        breaks, pos = [], 0
        for s in sents:
            breaks.append([pos, pos + len(s)])
            pos += len(s) + 1
        para = {"context": context, "sentences": sents, "sentence_breaks": breaks,
                "qas": [{"id": qid, "question": q, "answers": [{"text": "x", "answer_start": breaks[k][0]}]}
                        for qid, q, k in qas]}
        para.update(para_overrides)
        data.append({"title": title, "paragraphs": [para]})
    path.write_text(json.dumps({"version": "1.1", "data": data}, ensure_ascii=False), encoding="utf-8")
    return path


ARTS = [("Alpha", [("a1", "What is alpha?", 0), ("a2", "Where is alpha?", 1)]),
        ("Beta", [("b1", "What is beta?", 2)])]


@pytest.fixture
def src(tmp_path):
    d = tmp_path / "src"
    d.mkdir()
    lareqa_file(d / "en.json", ARTS)
    lareqa_file(d / "de.json", ARTS)
    return d


def run_prepare(tmp_path, src, capsys, benchmark="mlqa-r", languages="en,de"):
    out = tmp_path / "out"
    rc = main(["data", "prepare", "--benchmark", benchmark, "--source", str(src), "--out", str(out),
               "--languages", languages])
    cap = capsys.readouterr()
    return rc, cap.err.strip(), out


def assert_one_line_error(rc, err, out, *needles):
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    for needle in needles:
        assert needle in err, (needle, err)
    assert not out.exists()


def test_valid_synthetic_files_pass(tmp_path, src, capsys):
    rc, err, out = run_prepare(tmp_path, src, capsys)
    assert rc == 0, err
    assert (out / "qrels.parquet").exists()


def test_malformed_json(tmp_path, src, capsys):
    (src / "de.json").write_text('{"data": [', encoding="utf-8")
    assert_one_line_error(*run_prepare(tmp_path, src, capsys), "de.json", "malformed JSON (Expecting value at line 1 column 11)")


@pytest.mark.parametrize("key", ["sentences", "sentence_breaks"])
def test_missing_sentence_fields(tmp_path, src, capsys, key):
    d = json.loads((src / "en.json").read_text())
    del d["data"][1]["paragraphs"][0][key]
    (src / "en.json").write_text(json.dumps(d))
    assert_one_line_error(*run_prepare(tmp_path, src, capsys), "en.json", "article 1 paragraph 0", f"missing '{key}'")


def test_sentences_and_breaks_of_different_length(tmp_path, src, capsys):
    lareqa_file(src / "en.json", ARTS, sentences=["only one"])
    assert_one_line_error(*run_prepare(tmp_path, src, capsys), "en.json", "1 sentences but 3 sentence_breaks")


def test_answer_in_no_sentence_is_skipped_with_a_counted_warning(tmp_path, src, capsys):
    d = json.loads((src / "de.json").read_text())
    d["data"][0]["paragraphs"][0]["qas"][1]["answers"][0]["answer_start"] = 10_000
    (src / "de.json").write_text(json.dumps(d))
    rc, err, out = run_prepare(tmp_path, src, capsys)
    assert rc == 0
    assert err == f"warning: {src / 'de.json'}: skipped 1 question(s) whose answer_start is in no sentence"
    meta = json.loads((out / "meta.json").read_text())
    assert meta["counts"]["questions"] == {"en": 3, "de": 2} and len(meta["warnings"]) == 1
    qrels = pd.read_parquet(out / "qrels.parquet")
    # en/a2 keeps its own answer; the de answer of a2 cannot exist
    assert sorted(qrels[qrels["qid"] == "en/a2"]["cid"]) == ["en/0/1"]


def test_duplicate_question_id(tmp_path, src, capsys):
    lareqa_file(src / "en.json", [("Alpha", [("a1", "q", 0)]), ("Beta", [("a1", "q again", 1)])])
    assert_one_line_error(*run_prepare(tmp_path, src, capsys), "en.json", "duplicate question id 'a1'")


@pytest.mark.parametrize("langs,needle", [("en,qq", "unknown language code 'qq'"),
                                          ("en,EN", "invalid language code 'EN'"),
                                          ("en,fr", "fr not in mlqa-r")])
def test_bad_language_codes(tmp_path, src, capsys, langs, needle):
    assert_one_line_error(*run_prepare(tmp_path, src, capsys, languages=langs), "--languages", needle)


def test_missing_language_file(tmp_path, src, capsys):
    (src / "de.json").unlink()
    assert_one_line_error(*run_prepare(tmp_path, src, capsys), str(src), "missing de.json")


def test_empty_file(tmp_path, src, capsys):
    (src / "en.json").write_bytes(b"  \n")
    assert_one_line_error(*run_prepare(tmp_path, src, capsys), "en.json", "empty file")


def test_non_utf8(tmp_path, src, capsys):
    raw = (src / "de.json").read_bytes().replace(b"Alpha one.", b"Alpha \xe9ne.")
    (src / "de.json").write_bytes(raw)
    assert_one_line_error(*run_prepare(tmp_path, src, capsys), "de.json", "not UTF-8 (invalid byte at offset")


def test_not_squad_shape(tmp_path, src, capsys):
    (src / "en.json").write_text("[1, 2]")
    assert_one_line_error(*run_prepare(tmp_path, src, capsys), "en.json", "not SQuAD format")


def test_parallel_ids_that_do_not_match_in_a_fully_parallel_benchmark(tmp_path, src, capsys):
    lareqa_file(src / "de.json", [ARTS[0], ("Beta", [("b9", "What is beta?", 2)])])
    rc, err, out = run_prepare(tmp_path, src, capsys, benchmark="xquad-r")
    assert_one_line_error(rc, err, out, "de.json", "parallel ids do not match en.json", "1 missing, 1 extra")


def test_ids_tying_two_articles_together(tmp_path, src, capsys):
    # de puts a1 and b1 in one article while en has them in two: no consistent article
    lareqa_file(src / "de.json", [("Alpha", [("a1", "q", 0), ("b1", "q", 1)]), ("Beta", [("a2", "q", 2)])])
    rc, err, out = run_prepare(tmp_path, src, capsys)
    assert_one_line_error(rc, err, out, "parallel ids do not match", "'Alpha' and 'Beta'")


def test_failed_run_leaves_previous_output_untouched(tmp_path, src, capsys):
    rc, _, out = run_prepare(tmp_path, src, capsys)
    assert rc == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (src / "en.json").write_text("{")
    rc, err, _ = run_prepare(tmp_path, src, capsys)
    assert rc == 2 and "malformed JSON" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


# --- the pairs table: table sources, squad sources, spec strings -------------------------

GOOD = {"xling_id": "x1", "lang": "en", "question": "q?", "positive": "p."}


def run_pairs(tmp_path, capsys, *specs):
    out = tmp_path / "pairs-out"
    argv = ["data", "pairs", "--out", str(out)]
    for s in specs:
        argv += ["--source", s]
    rc = main(argv)
    return rc, capsys.readouterr().err.strip(), out


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("rows,needle", [
    ([{"lang": "en", "question": "q", "positive": "p"}], "missing column(s) xling_id"),
    ([dict(GOOD, question="  ")], "row 0: question must be a non-empty string"),
    ([GOOD, dict(GOOD, positive=None)], "row 1: positive must be a non-empty string"),
    ([dict(GOOD, lang="xx")], "row 0: unknown language code 'xx'"),
    ([dict(GOOD, hard_negatives="not a list")], "row 0: hard_negatives must be a list of strings"),
    ([dict(GOOD, hard_negatives=["ok", 3])], "row 0: hard_negatives must be a list of strings"),
    ([dict(GOOD, context=5)], "row 0: context must be a string or null"),
    ([GOOD, dict(GOOD, question="other")], "row 1: duplicate (dataset, xling_id, lang)"),
    ([dict(GOOD, score=1.0)], "unknown column(s) score"),
    ([dict(GOOD, xling_id=7)], "row 0: xling_id must be a non-empty string"),
])
def test_table_schema_errors(tmp_path, capsys, rows, needle):
    f = write_jsonl(tmp_path / "t.jsonl", rows)
    rc, err, out = run_pairs(tmp_path, capsys, f"table:{f}")
    assert_one_line_error(rc, err, out, str(f), needle)


def test_table_schema_errors_in_parquet(tmp_path, capsys):
    f = tmp_path / "t.parquet"
    pd.DataFrame([dict(GOOD, lang="english")]).to_parquet(f)
    rc, err, out = run_pairs(tmp_path, capsys, f"table:{f}")
    assert_one_line_error(rc, err, out, "t.parquet", "invalid language code 'english'")


@pytest.mark.parametrize("content,needle", [
    (b"", "empty file"),
    (b'{"xling_id": "x1"\n', "line 1: malformed JSON"),
    (b'["a list"]\n', "line 1: not a JSON object"),
    (b'{"xling_id": "\xff"}\n', "not UTF-8"),
])
def test_table_file_errors(tmp_path, capsys, content, needle):
    f = tmp_path / "t.jsonl"
    f.write_bytes(content)
    rc, err, out = run_pairs(tmp_path, capsys, f"table:{f}")
    assert_one_line_error(rc, err, out, "t.jsonl", needle)


def test_corrupt_parquet(tmp_path, capsys):
    f = tmp_path / "t.parquet"
    f.write_bytes(b"PAR1 not really")
    rc, err, out = run_pairs(tmp_path, capsys, f"table:{f}")
    assert_one_line_error(rc, err, out, "t.parquet", "unreadable Parquet")


def test_same_rows_from_two_sources(tmp_path, capsys):
    f = write_jsonl(tmp_path / "t.jsonl", [GOOD])
    rc, err, out = run_pairs(tmp_path, capsys, f"table:{f}", f"table:{f}")
    assert_one_line_error(rc, err, out, "duplicate (dataset, xling_id, lang) ('t', 'x1', 'en')")


@pytest.mark.parametrize("spec,needle", [
    ("nope:x", "expected KIND:LOCATION with KIND one of xquad-r, table, squad, mmarco"),
    ("squad:dir-without-name", "expected squad:NAME=DIR"),
    ("table:t.jsonl?limit=3", "unknown option(s) limit for table"),
    ("mmarco:x?limit=-1", "limit must be a non-negative integer"),
    ("mmarco:?langs=en", "missing location"),
    ("xquad-r:?langs=en,zz", "unknown language code 'zz'"),
    ("mmarco:no such dir", "neither a directory nor a Hub dataset id"),
])
def test_bad_source_specs(tmp_path, capsys, spec, needle):
    rc, err, out = run_pairs(tmp_path, capsys, spec)
    assert_one_line_error(rc, err, out, needle)


def test_squad_dir_with_unknown_language_file(tmp_path, src, capsys):
    lareqa_file(src / "xx.json", ARTS)
    rc, err, out = run_pairs(tmp_path, capsys, f"squad:tt={src}")
    assert_one_line_error(rc, err, out, "xx.json", "unknown language code 'xx'")


def test_squad_files_sharing_no_ids(tmp_path, src, capsys):
    lareqa_file(src / "de.json", [("Alpha", [("z1", "q", 0)])])
    rc, err, out = run_pairs(tmp_path, capsys, f"squad:tt={src}")
    assert_one_line_error(rc, err, out, "de.json", "parallel ids do not match")


def test_squad_file_errors_name_the_file(tmp_path, src, capsys):
    (src / "de.json").write_bytes(b"\xff\xfe{}")
    rc, err, out = run_pairs(tmp_path, capsys, f"squad:tt={src}")
    assert_one_line_error(rc, err, out, "de.json", "not UTF-8")


def test_squad_answer_in_no_sentence_is_a_counted_warning(tmp_path, src, capsys):
    d = json.loads((src / "de.json").read_text())
    d["data"][1]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] = 999
    (src / "de.json").write_text(json.dumps(d))
    rc, err, out = run_pairs(tmp_path, capsys, f"squad:tt={src}")
    assert rc == 0
    assert "skipped 1 question(s) whose answer_start is in no sentence" in err
    meta = json.loads((out / "pairs_meta.json").read_text())
    assert meta["rows_per_dataset_lang"] == {"tt": {"de": 2, "en": 3}}
