"""The CLI's last line of defence: an unexpected exception is one redacted line (exit 1),
`--debug` adds the traceback; Ctrl-C is one line (exit 130); a registry that cannot be
reached is one line within seconds, naming it."""

from __future__ import annotations

import time

import pytest

import hybrid.encoder
from hybrid.cli import main


def _encode_args(tmp_path) -> list[str]:
    (tmp_path / "t.txt").write_text("a text\n", encoding="utf-8")
    return ["encode", "--model", "me5-small", "--input", str(tmp_path / "t.txt"), "--kind", "query",
            "--out", str(tmp_path / "e.npy")]


def test_an_unexpected_exception_is_one_redacted_line(tmp_path, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("token=s3cr3t in a\nmulti-line message")

    monkeypatch.setattr(hybrid.encoder, "read_texts", broken)
    args = _encode_args(tmp_path)
    assert main(args) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == ["error: unexpected RuntimeError: token=*** in a (run again with --debug for the traceback)"]
    assert main([*args, "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "in broken" in err
    assert "s3cr3t" not in err and err.splitlines()[-1].startswith("error: unexpected RuntimeError")
    assert not (tmp_path / "e.npy").exists()


def test_ctrl_c_is_one_line_and_exit_130(tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(hybrid.encoder, "read_texts", interrupted)
    assert main(_encode_args(tmp_path)) == 130
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: interrupted; ")


def test_an_unreachable_registry_is_one_line_within_seconds(tmp_path, monkeypatch, capsys):
    """MLflow's client alone retries for minutes; the resolver bounds it (tasks.mlflow_server)."""
    pytest.importorskip("mlflow")
    import mlflow.tracking._tracking_service.utils as tracking_utils

    from hybrid.model import resolve
    from infra.stack import free_port
    from tasks.mlflow_registry import resolve_models_uri
    from tasks.mlflow_server import HTTP_DEFAULTS

    for key in HTTP_DEFAULTS:
        monkeypatch.delenv(key, raising=False)
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setattr(tracking_utils, "_tracking_uri", uri)  # an earlier test's set_tracking_uri
    monkeypatch.setitem(resolve._RESOLVERS, "models:/", resolve_models_uri)
    args = _encode_args(tmp_path)
    args[2] = "models:/hybrid-retriever@champion"
    t0 = time.monotonic()
    assert main(args) == 2
    spent = time.monotonic() - t0
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (f"error: model models:/hybrid-retriever@champion: cannot reach the MLflow "
                    f"registry at {uri} (after 2 HTTP retries)")
    assert spent < 60, spent
    assert not (tmp_path / "e.npy").exists()
