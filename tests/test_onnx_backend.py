"""The ONNX Runtime encoding backend (hybrid.onnx_encoder): equal to torch, exported once per
model and cached, a damaged export rebuilt, and one-line errors without onnxruntime."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hybrid.errors import HybridError

TEXTS = ["a", "Wie viele Sprachen spricht das Modell?", "x " * 200, "短い文です",
         "The quick brown fox jumps over the lazy dog. " * 6, "", "Paris"]


def test_onnx_equals_torch_on_mixed_lengths_and_padding(tiny):
    from hybrid.encoder import BiEncoder
    from hybrid.onnx_encoder import OnnxEncoder

    torch_enc, onnx_enc = BiEncoder.from_pretrained(tiny), OnnxEncoder.from_pretrained(tiny)
    for kind in ("query", "passage"):
        for batch_size in (1, 3, 64):  # padded batches of different widths, and none
            a = torch_enc.encode(TEXTS, kind, batch_size=batch_size, show_progress=False)
            b = onnx_enc.encode(TEXTS, kind, batch_size=batch_size, show_progress=False)
            assert b.shape == a.shape and b.dtype == np.float32
            assert np.min(np.sum(a * b, axis=1)) >= 0.9999, (kind, batch_size)
    assert onnx_enc.encode([], "query").shape[0] == 0


def test_export_is_cached_and_a_damaged_one_rebuilt(tiny):
    from hybrid.onnx_encoder import OnnxEncoder, export_onnx

    path = export_onnx(tiny)
    meta = json.loads((path.parent / "export.json").read_text())
    assert meta["min_cosine_vs_torch"] >= 0.9999
    stamp = path.stat().st_mtime_ns
    assert export_onnx(tiny) == path and path.stat().st_mtime_ns == stamp  # reused
    path.write_bytes(b"not a model")  # damaged in the cache
    rebuilt = export_onnx(tiny)
    assert rebuilt == path and path.read_bytes() != b"not a model"
    assert OnnxEncoder.from_pretrained(tiny).encode(["hello"], "query").shape == (1, 32)


def test_concurrent_exports_make_one_per_model_and_never_overlap(tiny, tmp_path, monkeypatch):
    # flows encode benchmarks and models in concurrent threads, each exporting its model on
    # first use; torch.onnx.export's state is process-global, so two exports at once failed
    import threading

    import hybrid.onnx_encoder as oe
    from hybrid.model import make_tiny_model

    other = make_tiny_model(tmp_path / "other", seed=1)  # another model: another entry
    calls, real = [], oe._export_fp32
    monkeypatch.setattr(oe, "_export_fp32", lambda *a: calls.append(a) or real(*a))
    jobs = [(m, int8) for m in (tiny, other) for int8 in (False, True, False)]
    start, got, errors = threading.Barrier(len(jobs)), [], []

    def export(model, int8):
        start.wait()
        try:
            got.append(oe.export_onnx(model, int8=int8, cache=tmp_path / "cache"))
        except Exception as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=export, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads)  # no deadlock
    assert not errors and len(calls) == 2  # one fp32 export per model, reused by int8
    assert {p.parent.name for p in got} == {"fp32", "int8"} and len(set(got)) == 4


def test_encode_texts_backends_share_nothing_and_agree(tiny, tmp_path, ray_session):
    from hybrid.evaluation.encode import encode_texts

    ids = [f"p{i}" for i in range(len(TEXTS))]
    kw = {"cache": tmp_path, "progress": False}
    t = encode_texts(tiny, ids, TEXTS, "passage", backend="torch", **kw)
    o = encode_texts(tiny, ids, TEXTS, "passage", backend="onnx", shards=2, **kw)
    q = encode_texts(tiny, ids, TEXTS, "passage", backend="onnx-int8", **kw)
    assert np.min(np.sum(t.vectors * o.vectors, axis=1)) >= 0.9999
    assert q.vectors.shape == t.vectors.shape and not np.array_equal(q.vectors, o.vectors)
    entries = sorted(p.name.split("-", 2)[2].rsplit("-b", 1)[0] for p in tmp_path.glob("*/*"))
    assert entries == ["fp32", "onnx", "onnx-int8"]  # one cache entry per backend
    again = encode_texts(tiny, ids, TEXTS, "passage", backend="onnx", **kw)  # from the cache
    assert np.array_equal(again.vectors, o.vectors)


def test_index_records_its_backend_and_queries_use_it(tiny, tmp_path, ray_session):
    from hybrid.index import Searcher, build_index

    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t or "-"}) + "\n"
                              for i, t in enumerate(TEXTS)))
    out = build_index(tiny, corpus, tmp_path / "idx", backend="onnx", progress=False)
    assert json.loads((out / "manifest.json").read_text())["encoding"]["backend"] == "onnx"
    s = Searcher(out)
    assert s._state.backend == "onnx"
    torch_side = Searcher(out, backend="torch")
    assert torch_side._state.backend == "torch"
    for query in ("Paris", "Wie viele Sprachen?"):
        ours, theirs = s.search([query], k=3)[0], torch_side.search([query], k=3)[0]
        assert [h["id"] for h in ours] == [h["id"] for h in theirs]
        assert [h["score"] for h in ours] == pytest.approx([h["score"] for h in theirs], abs=1e-4)


def test_without_onnxruntime_one_line_errors_and_auto_falls_back(tiny, monkeypatch, tmp_path, capsys):
    import hybrid.onnx_encoder as oe
    from hybrid.cli import main

    monkeypatch.setattr(oe, "onnx_available", lambda: False)
    assert oe.resolve_backend("auto") == "torch"
    with pytest.raises(HybridError, match="pip install onnx onnxruntime"):
        oe.resolve_backend("onnx")
    with pytest.raises(HybridError, match="unknown 'tensorrt'"):
        oe.resolve_backend("tensorrt")
    (tmp_path / "t.txt").write_text("hello\n")
    code = main(["encode", "--model", str(tiny), "--input", str(tmp_path / "t.txt"), "--kind",
                 "query", "--out", str(tmp_path / "e.npy"), "--backend", "onnx-int8"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "pip install onnx onnxruntime" in err
    assert not (tmp_path / "e.npy").exists()


def test_auto_picks_onnx_only_where_it_is_the_faster_exact_backend(monkeypatch):
    import torch

    import hybrid.onnx_encoder as oe

    def cpu(vendor: str, flags: str) -> str:
        return f"processor\t: 0\nvendor_id\t: {vendor}\nflags\t\t: fpu sse2 {flags}\n\nprocessor\t: 1\n"

    intel512, amd512 = cpu("GenuineIntel", "avx2 avx512f amx_bf16"), cpu("AuthenticAMD", "avx2 avx512f avx512_bf16")
    assert oe.torch_fp32_faster(intel512)
    assert not oe.torch_fp32_faster(amd512)  # measured: ONNX Runtime 1.13x torch
    assert not oe.torch_fp32_faster(cpu("AuthenticAMD", "avx2 fma"))  # measured: 1.7x
    assert not oe.torch_fp32_faster(cpu("GenuineIntel", "avx2 avx512_vnni"))  # no avx512f flag
    assert not oe.torch_fp32_faster("")  # nothing known: not torch's
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(oe, "_cpuinfo", lambda: amd512)
    assert oe.resolve_backend("auto") == "onnx"
    monkeypatch.setattr(oe, "_cpuinfo", lambda: intel512)
    assert oe.resolve_backend("auto") == "torch"
    monkeypatch.setattr(oe, "_cpuinfo", lambda: amd512)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert oe.resolve_backend("auto") == "torch"  # a GPU: torch
    assert oe.resolve_backend("onnx") == "onnx"  # asked for: as asked


def test_bf16_is_a_torch_setting(tiny):
    from hybrid.evaluation.encode import encoding_backend

    assert encoding_backend("auto", bf16=True) == "torch"
    with pytest.raises(HybridError, match="--bf16: applies to the torch backend"):
        encoding_backend("onnx", bf16=True)
