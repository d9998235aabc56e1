"""Model specs: built-in names, local dirs, HF ids (cache first, offline), URI schemes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hybrid.errors import HybridError
from hybrid.model import make_tiny_model, register_resolver, resolve_model
from hybrid.model import resolve as resolve_mod


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("m") / "tiny")


def test_local_dir(tiny):
    assert resolve_model(str(tiny)) == tiny.resolve()


def test_dir_without_weights_is_a_clear_error(tiny, tmp_path):
    d = tmp_path / "noweights"
    d.mkdir()
    shutil.copy(tiny / "config.json", d / "config.json")
    (d / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(HybridError, match=r"no \*\.safetensors weights .*pytorch_model\.bin"):
        resolve_model(str(d))
    (d / "config.json").unlink()
    with pytest.raises(HybridError, match="no config.json"):
        resolve_model(str(d))


def test_missing_path_and_unknown_name():
    with pytest.raises(HybridError, match="no such directory"):
        resolve_model("./no/such/model")
    with pytest.raises(HybridError, match="unknown model name.*me5-small"):
        resolve_model("me5-smal")
    with pytest.raises(HybridError, match="empty"):
        resolve_model("  ")


def test_uri_scheme_needs_a_registered_resolver(tiny, monkeypatch):
    with pytest.raises(HybridError, match="unknown URI scheme"):
        resolve_model("nosuch:/retriever@champion")
    monkeypatch.setattr(resolve_mod, "_RESOLVERS", {})
    seen = []

    def fake_registry(spec: str) -> Path:
        seen.append(spec)
        return tiny

    register_resolver("models:/", fake_registry)
    assert resolve_model("models:/retriever@champion") == tiny
    assert seen == ["models:/retriever@champion"]


def test_resolver_result_is_checked(tmp_path, monkeypatch):
    monkeypatch.setattr(resolve_mod, "_RESOLVERS", {})
    register_resolver("runs:/", lambda spec: tmp_path)
    with pytest.raises(HybridError, match="runs:/abc/model .*no config.json"):
        resolve_model("runs:/abc/model")


def test_hf_id_offline_and_not_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HybridError) as err:
        resolve_model("intfloat/multilingual-e5-small")
    msg = str(err.value)
    assert "intfloat/multilingual-e5-small" in msg and "HF_HUB_OFFLINE" in msg
    assert "\n" not in msg


def test_hf_id_from_the_local_cache(tiny, tmp_path, monkeypatch):
    """A model in the HF cache layout resolves without the network."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--acme--tiny-e5"
    shutil.copytree(tiny, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    got = resolve_model("acme/tiny-e5")
    assert got == repo / "snapshots" / commit
    assert (got / "model.safetensors").is_file()
