"""hybrid.centering: per-language means estimated on one set and applied to another, the
explicit rules for unseen and unknown languages, the save/load round trip, and every encode
path (encode_texts for evaluation and bitext, the index and its searcher, `hybrid encode`)
applying the same transform."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hybrid.centering import (
    FILE,
    GLOBAL,
    Centering,
    center_model,
    estimation_texts,
    sample_per_language,
)
from hybrid.encoder import SCORE_ATOL, BiEncoder
from hybrid.errors import HybridError

LANGS = ("en", "de", "fr")


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _synthetic(seed=0, n=200, dim=16):
    """Vectors = a strong per-language offset + noise, and their languages."""
    rng = np.random.default_rng(seed)
    offsets = {x: 3 * rng.normal(size=dim) for x in LANGS}
    langs = [LANGS[i % 3] for i in range(n)]
    return offsets, langs, np.stack([offsets[x] + rng.normal(size=dim) for x in langs]).astype(np.float32)


def _means(vectors, langs):
    langs = np.asarray(langs)
    return {x: vectors[langs == x].mean(axis=0) for x in sorted(set(langs))}


def test_means_from_one_set_remove_the_offset_of_another():
    offsets, langs, train = _synthetic(0)
    rng = np.random.default_rng(2)  # another draw around the same offsets
    test = np.stack([offsets[x] + rng.normal(size=16) for x in langs]).astype(np.float32)
    c = Centering({"query": _means(train, langs), "passage": _means(train, langs)})
    out = c.apply(test, "passage", langs)
    assert np.allclose(np.linalg.norm(out, axis=1), 1, atol=1e-6)
    # the language offset is gone: same-language rows are no more alike than others
    raw, cen = _unit(test), out
    same = np.equal.outer(np.asarray(langs), np.asarray(langs))
    assert (raw @ raw.T)[same].mean() > 0.8
    assert abs((cen @ cen.T)[same & ~np.eye(len(langs), dtype=bool)].mean()) < 0.1
    # exactly: each row minus its language's training mean, normalised
    want = _unit(test - np.stack([c.means["passage"][x] for x in langs]))
    assert np.allclose(out, want, atol=1e-6)


def test_unknown_language_is_the_nearest_mean_and_unseen_is_the_global_mean(caplog):
    offsets, langs, train = _synthetic(0)
    c = Centering({"query": _means(train, langs), "passage": _means(train, langs)})
    assert c.resolve(train, "query", None) == langs  # inferred from the offset
    assert c.resolve(train[:3], "query", ["de", None, "sw"]) == ["de", langs[1], GLOBAL]
    out = c.apply(train[:1], "query", ["sw"])
    glob = np.mean(np.stack(list(c.means["query"].values())), axis=0)
    assert np.allclose(out[0], _unit(train[0] - glob), atol=1e-6)
    assert "no query mean for sw" in caplog.text
    with pytest.raises(HybridError, match="kind"):
        c.apply(train, "doc")
    with pytest.raises(HybridError, match="shape"):
        c.apply(train[:, :3], "query")


def test_save_load_round_trip(tmp_path):
    _, langs, train = _synthetic(0)
    c = Centering({"query": _means(train, langs), "passage": _means(train[::-1], langs[::-1])},
                  {"query": {"en": 7, "de": 8, "fr": 9}, "passage": {"en": 1, "de": 2, "fr": 3}}, "somewhere")
    c.save(tmp_path)
    back = Centering.load(tmp_path)
    assert back.source == "somewhere" and back.counts == c.counts
    for k in ("query", "passage"):
        assert back.means[k].keys() == c.means[k].keys()
        for x in LANGS:
            assert np.array_equal(back.means[k][x], c.means[k][x])
        assert np.array_equal(back.apply(train, k, langs), c.apply(train, k, langs))
    assert Centering.load(tmp_path / "none") is None
    (tmp_path / FILE).write_text('{"version": 1, "kinds": {}}', encoding="utf-8")
    with pytest.raises(HybridError, match="not a centering file"):
        Centering.load(tmp_path)


def test_sample_per_language_is_bounded_and_seeded():
    langs = ["en"] * 50 + ["de"] * 5
    rows = sample_per_language(langs, 10, seed=3)
    assert sorted(np.asarray(langs)[rows].tolist()).count("en") == 10 and len(rows) == 15
    assert np.array_equal(rows, sample_per_language(langs, 10, seed=3))
    assert not np.array_equal(rows, sample_per_language(langs, 10, seed=4))


def _corpus(path: Path, n: int = 60, tag: str = "") -> Path:
    pq.write_table(pa.table({"id": [f"p{i}" for i in range(n)],
                             "text": [f"{tag}text {i} about topic {i % 4}" for i in range(n)],
                             "lang": [LANGS[i % 3] for i in range(n)]}), path)
    return path


@pytest.fixture(scope="module")
def centered(tiny, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("centered")
    return center_model(str(tiny), _corpus(d / "est.parquet", tag="estimate "), d / "model",
                        per_language=15, progress=False)


def test_center_model_writes_the_model_and_its_means(centered, tiny):
    from hybrid.evaluation.encode import model_fingerprint

    c = Centering.load(centered)
    assert c.languages("query") == c.languages("passage") == sorted(LANGS)
    assert c.counts["query"] == {"de": 15, "en": 15, "fr": 15}
    assert Centering.load(tiny) is None
    # the raw vectors (and so the embedding cache) do not depend on the means
    assert model_fingerprint(centered) == model_fingerprint(tiny)
    # the means are those of the estimation texts' raw vectors
    texts = estimation_texts(Path(centered).parent / "est.parquet", 15)
    ts, ls = texts["passage"]
    raw = BiEncoder.from_pretrained(tiny).encode(ts, "passage", show_progress=False)
    for x in LANGS:
        assert np.allclose(c.means["passage"][x], raw[np.asarray(ls) == x].mean(axis=0), atol=1e-5)


def test_encode_paths_agree(centered, tiny, tmp_path):
    """encode_texts (evaluation, bitext, index), the searcher's query path and `hybrid
    encode` give the same centered vectors as Centering.apply on BiEncoder.encode."""
    from hybrid.cli import main
    from hybrid.evaluation.encode import encode_texts
    from hybrid.index import Searcher, build_index

    corpus = _corpus(tmp_path / "c.parquet", 30, tag="held out ")
    t = pq.read_table(corpus).to_pydict()
    c = Centering.load(centered)
    raw = BiEncoder.from_pretrained(tiny).encode(t["text"], "passage", show_progress=False)
    want = c.apply(raw, "passage", t["lang"])
    got = encode_texts(str(centered), t["id"], t["text"], "passage", langs=t["lang"], progress=False)
    assert np.abs(got.vectors - want).max() < SCORE_ATOL
    plain = encode_texts(str(tiny), t["id"], t["text"], "passage", progress=False)
    assert np.abs(plain.vectors - raw).max() < SCORE_ATOL  # no means: raw vectors
    assert np.abs(plain.vectors - want).max() > 0.01

    # `hybrid encode` reads the lang field
    jl = tmp_path / "c.jsonl"
    jl.write_text("".join(json.dumps({"text": x, "lang": y}) + "\n" for x, y in zip(t["text"], t["lang"], strict=True)),
                  encoding="utf-8")
    assert main(["encode", "--model", str(centered), "--input", str(jl), "--kind", "passage",
                 "--out", str(tmp_path / "e.npy")]) == 0
    assert np.abs(np.load(tmp_path / "e.npy") - want).max() < SCORE_ATOL

    # the index holds centered passages; its searcher centers queries (language inferred)
    idx = build_index(str(centered), corpus, tmp_path / "idx", progress=False)
    manifest = json.loads((idx / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["model"]["centering"] is not None
    s = Searcher(idx)
    queries = ["text 3 about topic 3", "topic 1"]
    qraw = BiEncoder.from_pretrained(tiny).encode(queries, "query", show_progress=False)
    assert np.abs(s.current().encode(queries) - c.apply(qraw, "query")).max() < SCORE_ATOL
    hits = s.search(queries[:1], k=3)[0]
    scores = want @ c.apply(qraw, "query")[0]
    assert [h["id"] for h in hits] == [t["id"][i] for i in np.argsort(-scores, kind="stable")[:3]]

    # other means than the index was built with: refused, one line
    (Path(centered) / FILE).rename(tmp_path / "saved.json")
    try:
        with pytest.raises(HybridError, match="centering means"):
            Searcher(idx)
    finally:
        (tmp_path / "saved.json").rename(Path(centered) / FILE)


def test_estimation_data_refusals(tmp_path):
    pq.write_table(pa.table({"text": ["a"], "lang": ["xx"]}), tmp_path / "bad.parquet")
    with pytest.raises(HybridError, match="language code"):
        estimation_texts(tmp_path / "bad.parquet")
    pq.write_table(pa.table({"text": ["a"]}), tmp_path / "nolang.parquet")
    with pytest.raises(HybridError, match="no 'lang' column"):
        estimation_texts(tmp_path / "nolang.parquet")
    with pytest.raises(HybridError, match="neither"):
        estimation_texts(tmp_path / "missing")


def test_estimation_texts_from_a_jsonl_corpus_skip_rows_without_language(tmp_path):
    rows = [{"text": f"t{i}", "lang": LANGS[i % 3]} for i in range(9)] + [{"text": "no language"}]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    got = estimation_texts(tmp_path / "c.jsonl", per_language=2)
    for kind in ("query", "passage"):
        ts, ls = got[kind]
        assert sorted(ls) == ["de", "de", "en", "en", "fr", "fr"] and "no language" not in ts
