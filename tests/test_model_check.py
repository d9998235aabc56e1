"""Model directories are checked before anything loads them or writes (hybrid.model.check):
a damaged tiny model (weights, config, tokenizer) is one line `error: <file>: <problem>` with
exit status 2 from `hybrid encode` and `hybrid train`, and neither writes its output; intact
models (the tiny one, a task-model checkpoint with prefixed names, me5-small) pass."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

from hybrid.cli import main
from hybrid.errors import HybridError
from hybrid.model.check import check_model_files

LANGS = ["en", "de", "zh"]
ST = "model.safetensors"
QUERY_W = "encoder.layer.0.attention.self.query.weight"


# ------------------------------------------------------------------------------ damages
def _edit_config(**changes):
    def damage(d: Path) -> None:
        cfg = json.loads((d / "config.json").read_text(encoding="utf-8"))
        cfg.update(changes)
        for k in [k for k, v in changes.items() if v is None]:
            del cfg[k]
        (d / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    return damage


def _edit_weights(fn):
    def damage(d: Path) -> None:
        sd = fn(load_file(str(d / ST)))
        save_file(sd, str(d / ST), metadata={"format": "pt"})
    return damage


def _truncate(d: Path) -> None:
    data = (d / ST).read_bytes()
    (d / ST).write_bytes(data[: len(data) // 3])


def _write(name: str, content: bytes | str):
    def damage(d: Path) -> None:
        (d / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    return damage


def _unlink(name: str):
    return lambda d: (d / name).unlink()


# id: (damage, the file the message names, a fragment of the message)
DAMAGES = {
    "truncated-weights": (_truncate, ST, "truncated (header says 32.1 MB of tensors, file has 10.7 MB)"),
    "random-bytes-weights": (_write(ST, bytes(range(256)) * 400), ST, "not a safetensors file"),
    "empty-weights": (_write(ST, b""), ST, "not a safetensors file (0 bytes"),
    "weights-header-not-json": (_write(ST, (16).to_bytes(8, "little") + b"{not json at all" + b"\0" * 64),
                                ST, "the header is not JSON"),
    "malformed-config": (_write("config.json", '{"model_type": "bert",\n"hidden_size": 32,\n}'),
                         "config.json", "not valid JSON (Expecting property name enclosed in double "
                                        "quotes at line 3 column 1)"),
    "config-not-an-object": (_write("config.json", "[1, 2]"), "config.json", "not a JSON object"),
    "config-without-model-type": (_edit_config(model_type=None), "config.json", "no model_type"),
    "config-unknown-model-type": (_edit_config(model_type="nonesuch"), "config.json",
                                  "model_type 'nonesuch' is not known to transformers"),
    "config-unbuildable": (_edit_config(hidden_size=33), "config.json",
                           "not a multiple of the number of attention heads"),
    "config-hidden-size-changed": (_edit_config(hidden_size=64), ST,
                                   "has shape [32], config.json implies [64]"),
    "tensor-wrong-shape": (_edit_weights(lambda sd: {**sd, QUERY_W: torch.zeros(16, 32)}), ST,
                           f"tensor {QUERY_W} has shape [16, 32], config.json implies [32, 32]"),
    "no-tensor-matches": (_edit_weights(lambda sd: {"x." + k: v for k, v in sd.items()}), ST,
                          "no tensor is a parameter of the BertModel"),
    "missing-config": (_unlink("config.json"), "config.json", "no config.json"),
    "missing-weights": (_unlink(ST), "", "no *.safetensors weights"),
    "malformed-tokenizer": (_write("tokenizer.json", '{"version": "1.0", "model": '), "tokenizer.json",
                            "not valid JSON"),
    "tokenizer-not-a-tokenizer": (_write("tokenizer.json", "{}"), "tokenizer.json", "not a tokenizer"),
    "malformed-tokenizer-config": (_write("tokenizer_config.json", "{oops"), "tokenizer_config.json",
                                   "not valid JSON"),
}


@pytest.fixture(scope="module")
def damaged(tiny, tmp_path_factory):
    """{damage id: a copy of the tiny model damaged that way}, made once per module."""
    base = tmp_path_factory.mktemp("damaged")
    out = {}
    for name, (damage, _, _) in DAMAGES.items():
        d = base / name
        shutil.copytree(tiny, d)
        damage(d)
        out[name] = d.resolve()
    return out


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory):
    from hybrid.data.pairs import write_pairs

    rows = [{"dataset": "toy", "xling_id": f"id{i}", "lang": lg, "question": f"{lg} q {i}",
             "positive": f"{lg} a {i}", "context": None, "hard_negatives": []}
            for i in range(40) for lg in LANGS]
    d = tmp_path_factory.mktemp("pairs")
    write_pairs(pd.DataFrame(rows), d, {"source": "test"})
    return d


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir")
            for p in sorted(root.rglob("*"))}


def _one_error_line(capsys, model: Path, name: str) -> str:
    _, file, fragment = DAMAGES[name]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    line = err[0]
    assert str(model) in line and file in line, line  # resolve_model names the directory
    assert fragment in line, line
    return line


# ------------------------------------------------------------------------------ CLI
@pytest.mark.parametrize("name", list(DAMAGES))
def test_encode_with_a_damaged_model_is_one_line_and_writes_nothing(damaged, tmp_path, capsys, name):
    model = damaged[name]
    texts = tmp_path / "texts.txt"
    texts.write_text("a text\nanother one\n", encoding="utf-8")
    before_model, before = _tree(model), _tree(tmp_path)
    out = tmp_path / "emb.npy"
    capsys.readouterr()

    code = main(["encode", "--model", str(model), "--input", str(texts), "--kind", "query",
                 "--out", str(out)])

    line = _one_error_line(capsys, model, name)
    assert code == 2, line
    assert not out.exists()
    assert _tree(tmp_path) == before and _tree(model) == before_model


@pytest.mark.parametrize("name", list(DAMAGES))
def test_train_with_a_damaged_model_is_one_line_and_writes_nothing(damaged, pairs_dir, tmp_path, capsys, name):
    model = damaged[name]
    train = ["train", "--profile", "tiny", "--model", str(model), "--pairs", str(pairs_dir)]
    capsys.readouterr()

    # a new output directory is not created
    out = tmp_path / "run"
    code = main([*train, "--out", str(out)])
    line = _one_error_line(capsys, model, name)
    assert code == 2, line
    assert not out.exists()

    # an existing one (an earlier run's) is left as it was: no hybrid_config.json in it
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "keep.txt").write_text("an earlier output\n", encoding="utf-8")
    before = _tree(tmp_path)
    code = main([*train, "--out", str(earlier)])
    _one_error_line(capsys, model, name)
    assert code == 2
    assert _tree(tmp_path) == before


def test_train_precheck_checks_the_model_before_recording_the_config(damaged, pairs_dir, tmp_path):
    from hybrid.train import load_profile, train

    cfg = load_profile("tiny").override(**{
        "model.model": str(damaged["tensor-wrong-shape"]), "data.pairs": str(pairs_dir),
        "out": str(tmp_path / "run")})
    with pytest.raises(HybridError, match="config.json implies"):
        train(cfg)
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------ the check
def test_the_messages_name_the_file(damaged):
    for name, (_, file, fragment) in DAMAGES.items():
        if name in ("missing-config", "missing-weights"):
            continue  # resolve_model's own message (the directory); check_model_files names the file
        with pytest.raises(HybridError) as info:
            check_model_files(damaged[name])
        msg = str(info.value)
        assert msg.startswith(f"{damaged[name] / file}: ") and fragment in msg, msg
        assert "\n" not in msg
    with pytest.raises(HybridError, match="config.json: missing"):
        check_model_files(damaged["missing-config"])
    with pytest.raises(HybridError, match="no \\*.safetensors weights"):
        check_model_files(damaged["missing-weights"])


def test_the_intact_tiny_model_passes_and_loads(tiny, tmp_path):
    from hybrid.encoder import BiEncoder

    assert check_model_files(tiny) == tiny
    enc = BiEncoder.from_pretrained(tiny)
    assert enc.encode(["a text"], "query", show_progress=False).shape == (1, 32)


def test_a_task_checkpoint_with_prefixed_and_legacy_names_passes(tiny, tmp_path):
    """Names as a BertForMaskedLM-style checkpoint has them ("bert." prefix, a head's tensor,
    old LayerNorm.gamma/beta) and a missing tensor: transformers loads these, so does the check."""
    from hybrid.encoder import BiEncoder

    d = tmp_path / "prefixed"
    shutil.copytree(tiny, d)

    def rename(sd):
        out = {("bert." + k).replace("LayerNorm.weight", "LayerNorm.gamma")
               .replace("LayerNorm.bias", "LayerNorm.beta"): v for k, v in sd.items()
               if "layer.1.output.dense.bias" not in k}
        return {**out, "cls.predictions.bias": torch.zeros(250037)}

    _edit_weights(rename)(d)
    assert check_model_files(d) == d
    enc = BiEncoder.from_pretrained(d)
    ref = BiEncoder.from_pretrained(tiny)
    sd, ref_sd = enc.model.state_dict(), ref.model.state_dict()
    assert torch.equal(sd[QUERY_W], ref_sd[QUERY_W])
    assert torch.equal(sd["embeddings.LayerNorm.weight"], ref_sd["embeddings.LayerNorm.weight"])


def test_a_sharded_checkpoint_with_a_missing_shard(tiny, tmp_path):
    d = tmp_path / "sharded"
    shutil.copytree(tiny, d)
    index = d / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {QUERY_W: "model-00002-of-00002.safetensors"}}))
    with pytest.raises(HybridError, match=f"{index}: names shard model-00002-of-00002.safetensors, which is missing"):
        check_model_files(d)
    index.write_text("{")
    with pytest.raises(HybridError, match=f"{index}: not valid JSON"):
        check_model_files(d)


def test_a_checked_directory_is_checked_again_once_it_changes(tiny, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(tiny, d)
    assert check_model_files(d) == d
    t0 = time.perf_counter()
    check_model_files(d)
    assert time.perf_counter() - t0 < 0.05  # remembered
    _truncate(d)
    with pytest.raises(HybridError, match="truncated"):
        check_model_files(d)


def test_me5_small_passes_the_check(capsys):
    from hybrid.model import resolve_model
    from hybrid.model.check import _CHECKED

    path = resolve_model("me5-small")
    check_model_files(path)  # imports and warm-up
    _CHECKED.clear()
    t0 = time.perf_counter()
    assert check_model_files(path) == path
    ms = (time.perf_counter() - t0) * 1000
    with capsys.disabled():
        print(f"\ncheck_model_files(me5-small): {ms:.0f} ms ({os.cpu_count()} CPUs)")
    assert ms < 5000
