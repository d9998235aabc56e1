"""`hybrid encode`: texts in (.txt/.jsonl/.parquet), embeddings out (.npy/.parquet)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hybrid.cli import main
from hybrid.encoder import BiEncoder
from hybrid.model import make_tiny_model

TEXTS = ["Die Hauptstadt von Deutschland ist Berlin.", "?", "Москва — столица России.",
         "a", "東京は日本の首都です。"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("m") / "tiny")


@pytest.fixture(scope="module")
def expected(tiny) -> np.ndarray:
    return BiEncoder.from_pretrained(tiny).encode(TEXTS, "query", show_progress=False)


def _run(tiny, inp: Path, out: Path, *extra: str) -> int:
    return main(["encode", "--model", str(tiny), "--input", str(inp), "--kind", "query",
                 "--out", str(out), "--batch-size", "2", *extra])


def test_txt_to_npy(tiny, expected, tmp_path, capsys):
    inp = tmp_path / "in.txt"
    inp.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    assert _run(tiny, inp, tmp_path / "out.npy") == 0
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-5)
    assert "5 query embeddings" in capsys.readouterr().out


def test_jsonl_and_parquet_to_parquet(tiny, expected, tmp_path):
    jl = tmp_path / "in.jsonl"
    jl.write_text("".join(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n"
                          for i, t in enumerate(TEXTS)), encoding="utf-8")
    pqin = tmp_path / "in.parquet"
    pq.write_table(pa.table({"sentence": TEXTS}), pqin)
    for inp, extra in ((jl, ()), (pqin, ("--column", "sentence"))):
        out = tmp_path / f"{inp.suffix[1:]}.parquet"
        assert _run(tiny, inp, out, *extra) == 0
        table = pq.read_table(out)
        assert table.column("row").to_pylist() == list(range(len(TEXTS)))
        got = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_bf16_flag(tiny, expected, tmp_path):
    inp = tmp_path / "in.txt"
    inp.write_text("\n".join(TEXTS), encoding="utf-8")
    assert _run(tiny, inp, tmp_path / "o.npy", "--bf16") == 0
    got = np.load(tmp_path / "o.npy")
    assert ((got * expected).sum(1) > 0.98).all()


@pytest.mark.parametrize("case,message", [
    ("missing", "no such file"),
    ("csv", "unsupported input type .csv"),
    ("badjson", "in.jsonl:2: not valid JSON"),
    ("nocol", "no column 'text'"),
    ("outext", "unsupported output type"),
    ("kind", "kind"),
])
def test_errors_are_one_line(tiny, tmp_path, capsys, case, message):
    inp, out, kind = tmp_path / "in.txt", tmp_path / "o.npy", "query"
    inp.write_text("hello\n")
    if case == "csv":
        inp = tmp_path / "in.csv"
        inp.write_text("text\nhello\n")
    elif case == "badjson":
        inp = tmp_path / "in.jsonl"
        inp.write_text('{"text": "ok"}\n{"text": \n')
    elif case == "nocol":
        inp = tmp_path / "in.parquet"
        pq.write_table(pa.table({"sentence": ["x"]}), inp)
    elif case == "missing":
        inp = tmp_path / "absent.txt"
    elif case == "outext":
        out = tmp_path / "o.csv"
    elif case == "kind":
        kind = "doc"
    code = main(["encode", "--model", str(tiny), "--input", str(inp), "--kind", kind,
                 "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and message in err and "\n" not in err
    assert not out.exists()
