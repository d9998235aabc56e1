"""hybrid.index: corpus reading (three formats, one-line refusals), build_index (the
evaluation's embeddings, manifest, resume from finished shards, atomic rebuild) and
Searcher (ranking, exact language filter, weights-hash check, reload)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hybrid.errors import HybridError
from hybrid.index import Searcher, build_index, read_corpus

LANGS = ("en", "de", "fr")


def rows(n: int = 120, tag: str = "") -> list[dict]:
    return [{"id": f"p{i}", "text": f"{tag}passage {i} on subject {i % 7} and colour {i % 5}",
             "lang": LANGS[i % 3]} for i in range(n)]


def write_jsonl(path: Path, items: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in items), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("corpus") / "c.jsonl", rows())


@pytest.fixture(scope="module")
def flat(tiny, corpus, ray_session, tmp_path_factory) -> Path:
    return build_index(str(tiny), corpus, tmp_path_factory.mktemp("idx") / "flat", progress=False)


# ------------------------------------------------------------------------------- corpus
def test_three_formats_read_alike(tmp_path):
    items = rows(25)
    write_jsonl(tmp_path / "c.jsonl", items)
    pq.write_table(pa.Table.from_pylist(items), tmp_path / "c.parquet")
    (tmp_path / "c.tsv").write_text("id\ttext\tlang\n" + "".join(
        f"{r['id']}\t{r['text']}\t{r['lang']}\n" for r in items), encoding="utf-8")
    got = {}
    for ext in ("jsonl", "parquet", "tsv"):
        batches = list(read_corpus(tmp_path / f"c.{ext}", batch_size=10))
        assert [len(b) for b in batches] == [10, 10, 5]  # bounded by the batch
        got[ext] = [(i, t, lang) for b in batches for i, t, lang in zip(b.ids, b.texts, b.langs, strict=True)]
    assert got["jsonl"] == got["parquet"] == got["tsv"] == [(r["id"], r["text"], r["lang"]) for r in items]
    (tmp_path / "nolang.tsv").write_text("7\tseven\n8\teight\n", encoding="utf-8")
    b = next(read_corpus(tmp_path / "nolang.tsv"))
    assert (b.ids, b.langs) == (["7", "8"], [None, None])


@pytest.mark.parametrize("text, message", [
    ('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n', "c.jsonl:2: duplicate id 'a' (first at line 1)"),
    ('{"id": "", "text": "x"}\n', "c.jsonl:1: empty id"),
    ('{"id": "a", "text": "  "}\n', "c.jsonl:1: empty text (id 'a')"),
    ('{"id": "a"}\n', "c.jsonl:1: no 'text' field"),
    ('{"id": "a", "text": "x", "lang": "xx"}\n', "c.jsonl:1: unknown language code 'xx'"),
    ('{"id": "a", "text": "x"}\n{"id": \n', "c.jsonl:2: not valid JSON"),
    ('[1, 2]\n', "c.jsonl:1: expected a JSON object"),
    ('\n\n', "no passages"),
])
def test_bad_jsonl_is_one_line_naming_file_and_line(tmp_path, text, message):
    path = tmp_path / "c.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(HybridError) as e:
        list(read_corpus(path))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_bad_tsv_and_parquet(tmp_path):
    (tmp_path / "c.tsv").write_text("a\tx\nb\t\n", encoding="utf-8")
    with pytest.raises(HybridError, match=r"c\.tsv:2: empty text"):
        list(read_corpus(tmp_path / "c.tsv"))
    (tmp_path / "d.tsv").write_text("a\tx\tde\textra\n", encoding="utf-8")
    with pytest.raises(HybridError, match=r"d\.tsv:1: expected id<TAB>text"):
        list(read_corpus(tmp_path / "d.tsv"))
    pq.write_table(pa.table({"id": ["a", "b", "a"], "text": ["x", "y", "z"]}), tmp_path / "c.parquet")
    with pytest.raises(HybridError, match=r"c\.parquet:3: duplicate id 'a' \(first at line 1\)"):
        list(read_corpus(tmp_path / "c.parquet"))
    pq.write_table(pa.table({"docid": ["a"], "text": ["x"]}), tmp_path / "e.parquet")
    with pytest.raises(HybridError, match=r"e\.parquet: no 'id' column"):
        list(read_corpus(tmp_path / "e.parquet"))


# ------------------------------------------------------------------------------- build
@pytest.mark.slow  # Ray encoding tasks
def test_build_writes_evaluations_vectors_and_manifest(flat, tiny, corpus, ray_session):
    import faiss

    from hybrid.evaluation.encode import encode_texts, model_fingerprint

    assert sorted(p.name for p in flat.iterdir()) == ["index.faiss", "manifest.json", "passages.parquet"]
    m = json.loads((flat / "manifest.json").read_text())
    assert m["model"]["sha256"] == model_fingerprint(tiny) and m["model"]["spec"] == str(tiny)
    assert m["index"]["kind"] == "flat" and m["index"]["count"] == 120 and m["index"]["dim"] == 32
    assert m["corpus"]["sha256"] and m["languages"] == {"de": 40, "en": 40, "fr": 40}
    table = pq.read_table(flat / "passages.parquet")
    assert table.column("id").to_pylist() == [r["id"] for r in rows()]
    index = faiss.read_index(str(flat / "index.faiss"))
    items = rows()
    want = encode_texts(str(tiny), [r["id"] for r in items], [r["text"] for r in items],
                        "passage", progress=False)
    np.testing.assert_array_equal(index.reconstruct_n(0, index.ntotal), want.vectors)


@pytest.mark.slow  # Ray encoding tasks
def test_killed_build_resumes_from_finished_shards(tiny, ray_session, tmp_path):
    """A build interrupted after one of its two shards finished: the rerun keeps that
    shard's cached part (not rewritten) and encodes only the other; same index."""
    from hybrid.evaluation.encode import cache_entry

    items = rows(200)
    c = write_jsonl(tmp_path / "c.jsonl", items)
    cache = tmp_path / "emb"
    first = build_index(str(tiny), c, tmp_path / "a", shards=2, batch_size=16, cache=cache, progress=False)
    entry = cache_entry(tiny, [r["id"] for r in items], [r["text"] for r in items], "passage",
                        batch_size=16, cache=cache)
    kept = entry / "part-000-of-002.npy"
    stamp = kept.stat().st_mtime_ns
    for p in entry.glob("part-001-of-002.*"):
        p.unlink()  # the state a kill leaves: part 0 written, part 1 not
    again = build_index(str(tiny), c, tmp_path / "b", shards=2, batch_size=16, cache=cache, progress=False)
    assert kept.stat().st_mtime_ns == stamp and (entry / "part-001-of-002.json").exists()
    assert (first / "index.faiss").read_bytes() == (again / "index.faiss").read_bytes()


@pytest.mark.slow  # Ray encoding tasks
def test_rebuild_swaps_whole_filters_in_approximate_kinds_refuses_foreign_dir(tiny, corpus, ray_session, tmp_path):
    out = build_index(str(tiny), corpus, tmp_path / "idx", kind="hnsw", progress=False)
    before = json.loads((out / "manifest.json").read_text())
    [hits] = Searcher(out).search(["subject 1"], k=10, langs=["fr"])
    assert len(hits) == 10 and {h["lang"] for h in hits} == {"fr"}  # filter inside HNSW
    c2 = write_jsonl(tmp_path / "c2.jsonl", rows(60, tag="new "))
    build_index(str(tiny), c2, out, kind="ivf", progress=False)
    [hits] = Searcher(out).search(["subject 1"], k=10, langs=["fr"])
    assert len(hits) == 10 and {h["lang"] for h in hits} == {"fr"}  # and inside IVF
    after = json.loads((out / "manifest.json").read_text())
    assert (before["index"]["kind"], after["index"]["kind"]) == ("hnsw", "ivf")
    assert after["index"]["count"] == 60 and after["index"]["params"]["nlist"] == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c2.jsonl", "idx"]  # no temp left
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(HybridError, match="an existing directory with other content"):
        build_index(str(tiny), corpus, tmp_path / "mine", progress=False)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


# ------------------------------------------------------------------------------- search
def test_search_ranks_like_exact_scores_and_filters_languages(flat, tiny):
    from hybrid.encoder import BiEncoder

    s = Searcher(flat)
    enc = BiEncoder.from_pretrained(tiny)
    items = rows()
    p = enc.encode([r["text"] for r in items], "passage", show_progress=False)
    q = enc.encode(["subject 3 colour 2"], "query", show_progress=False)
    scores = (p @ q[0]).astype(np.float64)
    [hits] = s.search(["subject 3 colour 2"], k=5)
    assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    assert [h["id"] for h in hits] == [items[i]["id"] for i in np.argsort(-scores, kind="stable")[:5]]
    assert hits[0]["text"] == items[int(hits[0]["id"][1:])]["text"]
    for kind_langs in (["de"], ["de", "fr"]):
        [hits] = s.search(["subject 3 colour 2"], k=7, langs=kind_langs)
        mask = np.array([r["lang"] in kind_langs for r in items])
        best = np.flatnonzero(mask)[np.argsort(-scores[mask], kind="stable")[:7]]
        assert [h["id"] for h in hits] == [items[i]["id"] for i in best]
        assert {h["lang"] for h in hits} <= set(kind_langs)
    assert s.search(["x"], k=5, langs=["ja"]) == [[]]  # a language with no passage
    with pytest.raises(HybridError, match="k: must be between"):
        s.search(["x"], k=0)


@pytest.mark.slow  # Ray encoding tasks
def test_refuses_other_weights_and_reloads_new_version(flat, tiny, corpus, ray_session, tmp_path):
    from hybrid.model import make_tiny_model

    d = tmp_path / "idx"
    shutil.copytree(flat, d)
    s = Searcher(d)
    old = s.current()
    other = make_tiny_model(tmp_path / "other", seed=1)
    m = json.loads((d / "manifest.json").read_text())
    m["model"]["sha256"] = "0" * 64  # as if built with other weights than the spec's
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(HybridError, match=r"has weights .* the index was built with"):
        Searcher(d)
    with pytest.raises(HybridError):
        s.reload()
    assert s.current() is old  # a failed reload keeps serving the old version
    shutil.rmtree(d)
    build_index(str(other), corpus, d, progress=False)  # a new model's index in its place
    assert s.reload() and s.manifest["model"]["spec"] == str(other)
    assert s.search(["subject 1"], k=3, at=old)[0][0]["id"]  # the old version still answers
    assert not s.reload()  # unchanged: nothing to do
