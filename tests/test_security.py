"""Security defaults: no remote code and no pickles unless opted in, sealed checkpoints read
with `weights_only`, credentials masked in errors and logged configs, input paths confined
by HYBRID_DATA_ROOTS. (Loopback binding of the local stack: tests/test_infra.py; language
and dataset names as paths: tests/test_bad_input.py.)"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from hybrid.cli import main
from hybrid.encoder import BiEncoder
from hybrid.errors import HybridError
from hybrid.model import make_tiny_model
from hybrid.redact import MASK, redact, redact_config
from hybrid.train.checkpoint import STATE_FILE, read_state, write_state


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("sec-model") / "tiny")


class _Payload:
    """Unpickling this creates the directory `marker` (what an attacker's pickle would do)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def test_remote_code_runs_only_when_opted_in(tiny, tmp_path):
    model = tmp_path / "remote-code-model"
    shutil.copytree(tiny, model)
    marker = tmp_path / "remote-code-ran"
    (model / "evil.py").write_text(
        "from pathlib import Path\n"
        f"Path({str(marker)!r}).write_text('ran')\n"
        "from transformers import BertConfig, BertModel\n"
        "class EvilConfig(BertConfig):\n    pass\n"
        "class EvilModel(BertModel):\n    config_class = EvilConfig\n", encoding="utf-8")
    cfg = json.loads((model / "config.json").read_text())
    cfg["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"}
    (model / "config.json").write_text(json.dumps(cfg))

    enc = BiEncoder.from_pretrained(model)  # default: the model's own code is ignored
    assert not marker.exists() and type(enc.model).__name__ == "BertModel"
    BiEncoder.from_pretrained(model, trust_remote_code=True)  # the explicit opt-in runs it
    assert marker.read_text() == "ran"


def test_pickled_weights_are_never_loaded(tiny, tmp_path):
    model = tmp_path / "with-pickle"
    shutil.copytree(tiny, model)
    marker = tmp_path / "pickle-ran"
    torch.save({"weights": _Payload(marker)}, model / "pytorch_model.bin")
    enc = BiEncoder.from_pretrained(model)  # safetensors beside a pickle: the pickle is unused
    assert not marker.exists()
    ref = BiEncoder.from_pretrained(tiny)
    assert torch.equal(enc.model.embeddings.word_embeddings.weight, ref.model.embeddings.word_embeddings.weight)
    for f in model.glob("*.safetensors"):
        f.unlink()
    with pytest.raises(HybridError, match="no \\*.safetensors weights .*only safetensors are loaded"):
        BiEncoder.from_pretrained(model)
    assert not marker.exists()


def test_checkpoint_state_is_sealed_and_never_unpickles_objects(tmp_path):
    good = tmp_path / "step-000002"
    good.mkdir()
    write_state(good, {"step": 2, "trainable": {"w": torch.ones(2)}, "log": [{"loss": 0.5}]})
    state, used = read_state(good)
    assert used == good and state["step"] == 2 and torch.equal(state["trainable"]["w"], torch.ones(2))

    bad = tmp_path / "step-000004"
    bad.mkdir()
    marker = tmp_path / "state-pickle-ran"
    write_state(bad, {"step": 4, "payload": _Payload(marker)})  # sealed, yet hostile
    with pytest.raises(HybridError, match="not a training state written by hybrid"):
        read_state(bad)
    assert not marker.exists()

    (bad / STATE_FILE).write_bytes(b"changed after sealing")
    state, used = read_state(bad)  # a broken seal: the intact earlier checkpoint is used
    assert used == good and state["step"] == 2


def test_credentials_in_a_source_url_never_reach_the_error_line(tmp_path, capsys):
    out = tmp_path / "out"
    url = "http://reader:s3cr3t-pw@127.0.0.1:9/lareqa"
    assert main(["data", "prepare", "--benchmark", "mlqa-r", "--source", url, "--languages", "en",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: http://***@127.0.0.1:9/lareqa/en.json")
    assert "s3cr3t" not in err[0] and "reader" not in err[0] and not out.exists()
    assert "t0k3n" not in str(HybridError("https://h/x.json?token=t0k3n&lang=en: HTTP 403"))


def test_logged_configs_mask_secrets_and_keep_everything_else():
    cfg = {"train": {"model": {"model": "me5-small", "max_query_len": 64},
                     "data": {"hard_negatives": 0, "pairs": "runs/pairs"}},
           "sources": ["xquad-r:https://bob:hunter2@data.example/xq", "mmarco:unicamp-dl/mmarco?langs=en"],
           "HF_TOKEN": "hf_" + "a" * 30, "mlflow": {"tracking_password": "pw", "tokenizer": "fast"},
           "api_key": "k", "max_tokens": 512, "note": "Authorization: Bearer abcdefghijklmnopqrstu"}
    red = redact_config(cfg)
    text = json.dumps(red)
    for secret in ("hunter2", "bob:", "hf_aaaa", "\"pw\"", "\"k\"", "abcdefghijklmnopqrstu"):
        assert secret not in text
    assert red["HF_TOKEN"] == red["api_key"] == red["mlflow"]["tracking_password"] == MASK
    assert red["train"] == cfg["train"] and red["max_tokens"] == 512 and red["mlflow"]["tokenizer"] == "fast"
    assert red["sources"] == ["xquad-r:https://***@data.example/xq", "mmarco:unicamp-dl/mmarco?langs=en"]
    assert redact("models:/hybrid-retriever@champion") == "models:/hybrid-retriever@champion"


def test_data_roots_confine_inputs_also_through_symlinks(tmp_path, monkeypatch):
    from hybrid.paths import check_data_path

    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("x")
    (allowed / "link.txt").symlink_to(outside / "secret.txt")
    (allowed / "ok.txt").write_text("y")
    monkeypatch.setenv("HYBRID_DATA_ROOTS", f"{allowed}{os.pathsep}{tmp_path / 'other'}")
    assert check_data_path(allowed / "ok.txt", what="--input") == allowed / "ok.txt"
    for bad in (allowed / "link.txt", allowed / ".." / "outside" / "secret.txt", Path("/etc/passwd")):
        with pytest.raises(HybridError, match="outside the allowed data roots"):
            check_data_path(bad, what="--input")
    monkeypatch.delenv("HYBRID_DATA_ROOTS")
    assert check_data_path(Path("/etc/passwd"), what="--input") == Path("/etc/passwd")
