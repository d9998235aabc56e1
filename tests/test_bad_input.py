"""Bad input through the `hybrid` CLI, in one table: every case exits 2 with exactly one
stderr line `error: ...` naming the problem, and writes nothing anywhere (the whole test
directory, inputs and a pre-existing --out holding an earlier output's file, is
byte-identical after).

Area tests (test_data_bad_input.py, test_train.py, test_eval_pipeline.py, test_model_*.py)
check the detailed messages; this table checks the contract across commands, fast (no Ray
starts: every case fails in the checks before it).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from hybrid.cli import main
from hybrid.data.pairs import write_pairs
from hybrid.model import make_tiny_model

LANGS = ["en", "de", "zh"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("bad-model") / "tiny")


def _rows(n_ids: int, langs=LANGS, dataset: str = "toy") -> list[dict]:
    return [{"dataset": dataset, "xling_id": f"id{i}", "lang": lg, "question": f"{lg} q {i}",
             "positive": f"{lg} a {i}", "context": None, "hard_negatives": []}
            for i in range(n_ids) for lg in langs]


def _write_inputs(d: Path, tiny: Path) -> None:
    """Every input a case may point at, under `d`."""
    d.mkdir()
    write_pairs(pd.DataFrame(_rows(40)), d / "pairs", {"source": "test"})
    (d / "pairs-corrupt").mkdir()
    (d / "pairs-corrupt" / "pairs.parquet").write_bytes(b"PAR1 not really parquet")
    (d / "lareqa").mkdir()
    (d / "lareqa" / "en.json").write_text('{"data": [', encoding="utf-8")  # malformed
    (d / "lareqa-empty").mkdir()
    (d / "lareqa-empty" / "en.json").write_text("", encoding="utf-8")
    (d / "empty.jsonl").write_text("", encoding="utf-8")
    (d / "badlang.jsonl").write_text(
        json.dumps({"xling_id": "1", "lang": "english", "question": "q", "positive": "p"}) + "\n",
        encoding="utf-8")
    (d / "good.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rows(3)), encoding="utf-8")
    (d / "squad").mkdir()
    (d / "texts.txt").write_text("a text\nanother\n", encoding="utf-8")
    (d / "empty.txt").write_text("", encoding="utf-8")
    no_weights = d / "model-no-weights"
    shutil.copytree(tiny, no_weights)
    for f in no_weights.glob("*.safetensors"):
        f.unlink()
    (no_weights / "pytorch_model.bin").write_bytes(b"pickle")
    (d / "profile.yaml").write_text("run:\n  steps: [1\n", encoding="utf-8")
    (d / "latin1.txt").write_bytes("caf\xe9 cr\xe8me\n".encode("latin-1"))
    (d / "blank-line.txt").write_text("a text\n\nanother\n", encoding="utf-8")
    (d / "dir.npy").mkdir()
    (d / "unterminated.jsonl").write_text('{"xling_id": "1", "lang": "en", "question": "q\n',
                                          encoding="utf-8")
    write_pairs(pd.DataFrame(_rows(20, ["en"]) + _rows(20, ["de"], dataset="other")),
                d / "pairs-not-parallel", {"source": "test"})


# Each case: (id, argv template, a fragment the message must contain, env).
# {in} is the inputs dir, {out} the --out dir (exists, holds a file of an earlier output of
# the same command, `KEEP`), {tiny} the model, {xq} the offline XQuAD-R files, {root} the
# test directory.
TRAIN = ["train", "--profile", "tiny", "--model", "{tiny}", "--pairs", "{in}/pairs", "--out", "{out}"]
EVAL = ["evaluate", "--benchmark", "xquad-r", "--source", "{xq}", "--out", "{out}", "--languages", "en"]
ENCODE = ["encode", "--model", "{tiny}", "--input", "{in}/texts.txt", "--kind", "query",
          "--out", "{out}/emb.npy"]
PAIRS = ["data", "pairs", "--out", "{out}"]
PREPARE = ["data", "prepare", "--benchmark", "xquad-r", "--out", "{out}"]
CASES = [
    # data files
    ("malformed-json", [*PREPARE, "--source", "{in}/lareqa", "--languages", "en"], "malformed JSON", {}),
    ("empty-json", [*PREPARE, "--source", "{in}/lareqa-empty", "--languages", "en"], "empty file", {}),
    ("missing-language-file", [*PREPARE, "--source", "{in}/lareqa", "--languages", "en,de"],
     "missing de.json", {}),
    ("unknown-language", [*PREPARE, "--source", "{in}/lareqa", "--languages", "en,xx"],
     "unknown language code 'xx'", {}),
    ("language-as-path", [*PREPARE, "--source", "{in}/lareqa", "--languages", "../en"],
     "invalid language code '../en'", {}),
    ("language-not-in-benchmark", [*PREPARE, "--source", "{in}/lareqa", "--languages", "en,fr"],
     "fr not in xquad-r", {}),
    ("unknown-benchmark", ["data", "prepare", "--benchmark", "xquad", "--source", "{in}/lareqa",
                           "--out", "{out}"], "xquad", {}),
    ("empty-table", [*PAIRS, "--source", "table:{in}/empty.jsonl"], "empty.jsonl", {}),
    ("table-bad-language", [*PAIRS, "--source", "table:{in}/badlang.jsonl"], "'english'", {}),
    ("dataset-name-as-path", [*PAIRS, "--source", "table:{in}/good.jsonl?dataset=../../etc"],
     "invalid name '../../etc'", {}),
    ("squad-name-as-path", [*PAIRS, "--source", "squad:a/b={in}/squad"], "invalid name 'a/b'", {}),
    ("unknown-source-kind", [*PAIRS, "--source", "csv:{in}/good.jsonl"], "expected KIND:LOCATION", {}),
    ("source-outside-data-roots", [*PAIRS, "--source", "table:{in}/good.jsonl"],
     "outside the allowed data roots", {"HYBRID_DATA_ROOTS": "{root}/allowed"}),
    # training
    ("alpha-above-1", [*TRAIN, "--alpha", "1.5"], "--alpha: must be in [0, 1], got 1.5", {}),
    ("alpha-below-0", [*TRAIN, "--alpha", "-0.1"], "--alpha: must be in [0, 1], got -0.1", {}),
    ("alpha-nan", [*TRAIN, "--alpha", "nan"], "--alpha", {}),
    ("teacher-without-distill-weight", [*TRAIN, "--distill-teacher", "{tiny}"],
     "--distill-teacher: needs --distill-weight > 0", {}),
    ("teacher-without-weights", [*TRAIN, "--distill-weight", "1", "--distill-teacher",
                                 "{in}/model-no-weights"], "model-no-weights", {}),
    ("batch-larger-than-ids", [*TRAIN, "--batch-size", "64"], "--batch-size: 64 > unique ids", {}),
    ("batch-not-divisible", [*TRAIN, "--batch-size", "9"], "not divisible by the 2 workers", {}),
    ("zero-steps", [*TRAIN, "--steps", "0"], "--steps: must be >= 1, got 0", {}),
    ("unknown-strategy", [*TRAIN, "--strategy", "mono"], "--strategy: unknown 'mono'", {}),
    ("unknown-profile", [*TRAIN[:2], "nope", *TRAIN[3:]], "unknown profile 'nope'", {}),
    ("broken-profile-yaml", [*TRAIN[:2], "{in}/profile.yaml", *TRAIN[3:]], "not valid YAML", {}),
    ("missing-pairs", [*TRAIN[:6], "{in}/nothing", *TRAIN[7:]], "no pairs table", {}),
    ("corrupt-pairs", [*TRAIN[:6], "{in}/pairs-corrupt", *TRAIN[7:]], "unreadable Parquet", {}),
    ("pairs-outside-data-roots", TRAIN, "--pairs", {"HYBRID_DATA_ROOTS": "{root}/allowed"}),
    ("unknown-model-name", [*TRAIN[:4], "me5-smal", *TRAIN[5:]], "unknown model name", {}),
    ("model-without-weights", [*TRAIN[:4], "{in}/model-no-weights", *TRAIN[5:]],
     "no *.safetensors weights (found pytorch_model.bin", {}),
    ("unregistered-uri-scheme", [*TRAIN[:4], "s3://bucket/model", *TRAIN[5:]], "unknown URI scheme", {}),
    ("batches-zero-steps", ["batches", "--pairs", "{in}/pairs", "--steps", "0", "--out", "{out}/b.jsonl"],
     "--steps: must be >= 1", {}),
    # evaluation and encoding
    ("eval-unknown-model", [*EVAL, "--model", "me5-smal"], "me5-smal", {}),
    ("eval-model-without-weights", [*EVAL, "--model", "{in}/model-no-weights"],
     "no *.safetensors", {}),
    ("eval-unknown-language", [*EVAL[:-1], "en,qq", "--model", "{tiny}"], "'qq'", {}),
    ("eval-source-outside-data-roots", [*EVAL, "--model", "{tiny}"], "outside the allowed data roots",
     {"HYBRID_DATA_ROOTS": "{root}/allowed"}),
    ("eval-bad-split", [*EVAL, "--model", "{tiny}", "--split", "train"], "--split", {}),
    ("encode-bad-kind", [*ENCODE[:5], "--kind", "document", *ENCODE[7:]], "document", {}),
    ("encode-missing-input", [*ENCODE[:3], "--input", "{in}/nothing.txt", *ENCODE[5:]], "no such file", {}),
    ("encode-input-outside-data-roots", ENCODE, "outside the allowed data roots",
     {"HYBRID_DATA_ROOTS": "{root}/allowed"}),
    ("encode-bad-output-type", [*ENCODE[:-1], "{out}/emb.csv"], "unsupported output type", {}),
    # output paths: never replaced by the other kind, never a user's directory deleted
    ("batches-out-is-a-directory", ["batches", "--pairs", "{in}/pairs", "--out", "{out}"],
     "is a directory (expected a file)", {}),
    ("encode-out-is-a-directory", [*ENCODE[:-1], "{in}/dir.npy"], "is a directory", {}),
    ("prepare-out-is-a-file", [*PREPARE[:-1], "{in}/texts.txt", "--source", "{xq}"],
     "exists and is not a directory", {}),
    ("pairs-out-parent-is-a-file", ["data", "pairs", "--out", "{in}/texts.txt/sub", "--source",
                                    "table:{in}/good.jsonl"], "texts.txt is not a directory", {}),
    ("train-out-is-a-file", [*TRAIN[:-1], "{in}/texts.txt"], "exists and is not a directory", {}),
    ("eval-out-is-a-file", [*EVAL[:6], "{in}/texts.txt", *EVAL[7:], "--model", "{tiny}"],
     "exists and is not a directory", {}),
    ("batches-out-parent-is-a-file", ["batches", "--pairs", "{in}/pairs", "--out",
                                      "{in}/texts.txt/b.jsonl"], "is not a directory", {}),
    ("prepare-out-not-writable", [*PREPARE[:-1], "/sys/hybrid-test/out", "--source", "{xq}"],
     "cannot write in /sys", {}),
    ("prepare-out-is-a-users-directory", [*PREPARE[:-1], "{root}", "--source", "{xq}"],
     "an existing directory with other content (allowed, in, out)", {}),
    ("pairs-out-is-a-users-directory", ["data", "pairs", "--out", "{in}", "--source",
                                        "table:{in}/good.jsonl"], "other content", {}),
    ("eval-out-is-a-users-directory", [*EVAL[:6], "{in}", *EVAL[7:], "--model", "{tiny}"],
     "other content", {}),
    # input files
    ("encode-input-not-utf8", [*ENCODE[:3], "--input", "{in}/latin1.txt", *ENCODE[5:]],
     "not UTF-8 text", {}),
    ("encode-empty-input", [*ENCODE[:3], "--input", "{in}/empty.txt", *ENCODE[5:]], "no texts", {}),
    ("encode-blank-line", [*ENCODE[:3], "--input", "{in}/blank-line.txt", *ENCODE[5:]],
     "line 2 is an empty text", {}),
    ("encode-input-is-a-directory", [*ENCODE[:3], "--input", "{in}/squad", *ENCODE[5:]],
     "is a directory (expected a file)", {}),
    ("table-unterminated-json", [*PAIRS, "--source", "table:{in}/unterminated.jsonl"],
     "malformed JSON (Unterminated string starting at column 45)", {}),
    ("pairs-without-parallel-ids", [*TRAIN[:6], "{in}/pairs-not-parallel", *TRAIN[7:]],
     "no xling_id of dataset 'other' has rows in two languages", {}),
    ("languages-empty", [*PREPARE, "--source", "{xq}", "--languages", ""], "--languages: no language", {}),
    ("languages-only-commas", [*PREPARE, "--source", "{xq}", "--languages", ","],
     "--languages: no language", {}),
    # usage errors: one line, not Typer's box
    ("missing-required-option", ["encode", "--model", "{tiny}", "--kind", "query", "--out", "{out}/e.npy"],
     "--input: missing", {}),
    ("unknown-option", [*ENCODE, "--frobnicate"], "No such option: --frobnicate", {}),
    ("not-an-integer", [*TRAIN, "--steps", "many"], "--steps: Input should be a valid integer", {}),
    ("unknown-command", ["trian"], "No such command 'trian'", {}),
]
KEEP = {"prepare": "meta.json", "pairs": "pairs_meta.json", "evaluate": "metrics.json"}


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir")
            for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("argv, needle, env", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_writes_nothing(tiny, xquad_dir, tmp_path, monkeypatch, capsys, argv, needle, env):
    _write_inputs(tmp_path / "in", tiny)
    (tmp_path / "allowed").mkdir()
    out = tmp_path / "out"
    out.mkdir()
    command = argv[1] if argv[0] == "data" else argv[0]
    (out / KEEP.get(command, "keep.txt")).write_text("an earlier output\n", encoding="utf-8")
    fill = {"in": str(tmp_path / "in"), "out": str(out), "tiny": str(tiny), "root": str(tmp_path),
            "xq": str(xquad_dir)}
    for key, value in env.items():
        monkeypatch.setenv(key, value.format(**fill))
    before = _tree(tmp_path)
    capsys.readouterr()

    code = main([a.format(**fill) for a in argv])

    err_lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err_lines
    assert len(err_lines) == 1 and err_lines[0].startswith("error: "), err_lines
    assert needle in err_lines[0]
    assert _tree(tmp_path) == before  # nothing written, removed or changed


def test_the_table_covers_at_least_40_cases_and_every_command():
    assert len({c[0] for c in CASES}) == len(CASES) >= 40
    commands = {c[1][1] if c[1][0] == "data" else c[1][0] for c in CASES}
    assert {"prepare", "pairs", "train", "batches", "evaluate", "encode"} <= commands


def test_registry_alias_that_does_not_exist(tiny, tmp_path, tmp_path_factory, monkeypatch, capsys):
    """`models:/NAME@ALIAS` for an alias the registry lacks (a real sqlite MLflow store)."""
    pytest.importorskip("mlflow")
    from hybrid.model import resolve
    from tasks.mlflow_registry import resolve_models_uri

    store = tmp_path_factory.mktemp("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}/mlflow.db")
    # the entry point `hybrid.resolvers` installs this resolver once merged; the same here
    monkeypatch.setitem(resolve._RESOLVERS, "models:/", resolve_models_uri)
    (tmp_path / "t.txt").write_text("a text\n", encoding="utf-8")
    before = _tree(tmp_path)
    capsys.readouterr()
    code = main(["encode", "--model", "models:/hybrid-retriever@nope", "--input", str(tmp_path / "t.txt"),
                 "--kind", "query", "--out", str(tmp_path / "e.npy")])
    err = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert code == 2 and len(err) == 1, err
    assert "models:/hybrid-retriever@nope: not in the MLflow registry" in err[0]
    assert _tree(tmp_path) == before
