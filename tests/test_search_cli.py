"""`hybrid index build` and `hybrid search` as a user runs them (hybrid.cli.main in process):
output, --json, --lang, and one-line refusals with exit status 2 and nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hybrid.cli import main

TEXTS = {"en": "The cathedral was built in the twelfth century.",
         "de": "Der Dom wurde im zwölften Jahrhundert gebaut.",
         "fr": "La cathédrale fut construite au douzième siècle."}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "passages.tsv"
    lines = ["id\ttext\tlang"] + [f"{lang}-{i}\t{text} ({i})\t{lang}"
                                  for i in range(20) for lang, text in TEXTS.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def index(tiny, corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("idx") / "index"
    assert main(["index", "build", "--model", str(tiny), "--corpus", str(corpus),
                 "--out", str(out), "--kind", "hnsw"]) == 0
    return out


@pytest.mark.slow  # builds an index (its encoding in this process: one shard, no Ray)
def test_build_then_search_text_and_json(index, capsys):
    capsys.readouterr()
    assert main(["search", "--index", str(index), "-k", "4", "cathedral", "Dom"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "# cathedral" and out[5] == "# Dom" and len(out) == 10
    rank, score, lang, pid = out[1].split()[:4]
    assert rank == "1" and 0 < float(score) <= 1 and lang in TEXTS and pid.startswith(lang + "-")
    assert main(["search", "--index", str(index), "--json", "-k", "3", "--lang", "de,fr", "siècle"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    got = json.loads(line)
    assert got["query"] == "siècle" and [h["rank"] for h in got["hits"]] == [1, 2, 3]
    assert {h["lang"] for h in got["hits"]} <= {"de", "fr"}
    assert set(got["hits"][0]) == {"rank", "id", "score", "lang", "text"}
    m = json.loads((index / "manifest.json").read_text())
    assert m["index"]["kind"] == "hnsw" and m["index"]["count"] == 60


@pytest.mark.slow  # exports the tiny model to ONNX
def test_search_with_another_exact_query_backend(index, capsys):
    """--backend encodes the queries with another exact backend than the passages' (onnx
    for a torch-encoded index, torch for an onnx one: `auto` depends on the CPU): the same
    hits (exact backends agree to cosine >= 0.9999)."""
    own = json.loads((index / "manifest.json").read_text())["encoding"]["backend"]
    other = {"torch": "onnx", "onnx": "torch"}[own]
    hits = {}
    for backend in (own, other):
        capsys.readouterr()
        assert main(["search", "--index", str(index), "--json", "-k", "5", "--backend", backend,
                     "cathedral century", "Dom"]) == 0
        hits[backend] = [json.loads(line)["hits"] for line in capsys.readouterr().out.splitlines()]
    for a, b in zip(hits[own], hits[other], strict=True):
        assert [h["score"] for h in a] == pytest.approx([h["score"] for h in b], abs=1e-4)
        assert {h["id"] for h in a} == {h["id"] for h in b}


@pytest.mark.parametrize("case, message", [
    ("dup", "passages.tsv:3: duplicate id 'a' (first at line 2)"),
    ("empty-id", "passages.tsv:2: empty id"),
    ("empty-text", "passages.tsv:3: empty text (id 'b')"),
    ("kind", "--kind: must be one of flat, ivf, hnsw, not 'lsh'"),
    ("format", "unknown format (expected .jsonl, .parquet or .tsv)"),
])
def test_build_refusals(case, message, tiny, tmp_path, capsys):
    corpus = tmp_path / ("passages.csv" if case == "format" else "passages.tsv")
    body = {"dup": "a\tx\na\ty\n", "empty-id": "\tx\n", "empty-text": "a\tx\nb\t \n"}.get(case, "a\tx\n")
    corpus.write_text("id\ttext\n" + body, encoding="utf-8")
    out = tmp_path / "idx"
    args = ["index", "build", "--model", str(tiny), "--corpus", str(corpus), "--out", str(out)]
    assert main(args + (["--kind", "lsh"] if case == "kind" else [])) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not out.exists()


def test_search_refusals(index, tmp_path, capsys):
    cases = [
        (["--index", str(tmp_path / "none"), "q"], "not an index directory"),
        (["--index", str(index), "-k", "0", "q"], "-k: must be between 1 and 1000"),
        (["--index", str(index), "--lang", "xx", "q"], "unknown language code 'xx'"),
        (["--index", str(index), " "], "QUERY: an empty query"),
        (["--index", str(index), "--backend", "tf", "q"], "--backend: unknown 'tf'"),
    ]
    other = tmp_path / "other"
    other.mkdir()
    for name in ("index.faiss", "passages.parquet"):
        (other / name).write_bytes((index / name).read_bytes())
    m = json.loads((index / "manifest.json").read_text())
    m["model"]["sha256"] = "f" * 64
    (other / "manifest.json").write_text(json.dumps(m))
    cases.append((["--index", str(other), "q"], "the index was built with ffffffffffff"))
    for args, message in cases:
        assert main(["search", *args]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err


def test_serve_refusals_before_listening(index, tmp_path, capsys):
    """`hybrid serve` refuses bad options with one line and exit status 2, before it opens
    the index or a port."""
    from infra.stack import free_port

    for args, message in [
        (["--index", str(index), "--threads", "-1"], "--threads: must be 0 (all cores) or more, not -1"),
        (["--index", str(index), "--port", "70000"], "--port: must be between 1 and 65535, not 70000"),
        (["--index", str(tmp_path / "none"), "--port", str(free_port())], "not an index directory"),
    ]:
        assert main(["serve", *args]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
