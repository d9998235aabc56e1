"""Bitext retrieval: Tatoeba / aligned-file readers, exact ranks against a per-query
reference, and 'hybrid evaluate --benchmark tatoeba|bitext' end to end with the tiny model."""

import json
from pathlib import Path

import numpy as np
import pytest

from hybrid.cli import main
from hybrid.data.bitext import TATOEBA_CODES, read_aligned, read_tatoeba
from hybrid.errors import HybridError
from hybrid.evaluation.bitext import pair_ranks, pool
from hybrid.evaluation.matrix import score_matrix
from hybrid.evaluation.metrics import ranks_from_scores
from hybrid.evaluation.trec import read_qrels, read_run


@pytest.fixture(scope="module")
def small_tatoeba(tmp_path_factory, data_dir):
    """The first 80 lines of the th pair, as HYBRID_DATA/tatoeba."""
    root = tmp_path_factory.mktemp("data")
    (root / "tatoeba").mkdir()
    for code in ("tha",):
        for side in (code, "eng"):
            name = f"tatoeba.{code}-eng.{side}"
            lines = (data_dir / "tatoeba" / name).read_text(encoding="utf-8").splitlines()[:80]
            (root / "tatoeba" / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_tatoeba_reader_maps_codes_and_directions(data_dir):
    b = read_tatoeba(data_dir / "tatoeba", directions="both")
    assert [p.key for p in b.pairs][:4] == ["ar-en", "en-ar", "de-en", "en-de"]
    assert len(b.pairs) == 20 and "en" not in b.languages
    assert len(b.sides["tha-eng.tha"]) == len(b.sides["tha-eng.eng"]) == 548
    assert b.sides["deu-eng.deu"][0].startswith("Maria sagte")
    assert {TATOEBA_CODES[x] for x in b.languages} >= {"ara", "cmn", "ell", "tur", "vie"}
    assert [p.key for p in read_tatoeba(data_dir / "tatoeba", ["de"]).pairs] == ["de-en"]
    for langs, msg in ((["en"], "pivot"), (["xx"], "unknown language"), (["de", "de"], "duplicate")):
        with pytest.raises(HybridError, match=msg):
            read_tatoeba(data_dir / "tatoeba", langs)
    with pytest.raises(HybridError, match="directions"):
        read_tatoeba(data_dir / "tatoeba", ["de"], directions="up")


def test_aligned_reader_checks_alignment(tmp_path):
    (tmp_path / "de.txt").write_text("a\nb\nc\n")
    (tmp_path / "fr.txt").write_text("x\ny\nz\n")
    (tmp_path / "en.txt").write_text("1\n2\n3\n")
    b = read_aligned(tmp_path)
    assert b.languages == ["de", "en", "fr"] and len(b.pairs) == 6
    (tmp_path / "en.txt").write_text("1\n2\n")
    with pytest.raises(HybridError, match="not aligned"):
        read_aligned(tmp_path)
    (tmp_path / "en.txt").write_text("1\n\n3\n")
    with pytest.raises(HybridError, match="line 2 is empty"):
        read_aligned(tmp_path)
    (tmp_path / "en.txt").write_bytes(b"1\n\xff\n3\n")
    with pytest.raises(HybridError, match="not UTF-8"):
        read_aligned(tmp_path)
    (tmp_path / "english.txt").write_text("1\n2\n3\n")
    with pytest.raises(HybridError, match="invalid language code"):
        read_aligned(tmp_path)


def test_ranks_match_a_per_query_reference_with_duplicates_and_ties():
    rng = np.random.default_rng(0)
    texts = [f"t{i}" for i in rng.integers(0, 40, size=120)]  # many duplicate targets
    uniq, gold = pool(texts)
    assert len(uniq) == len(set(texts)) and [uniq[g] for g in gold] == texts
    tgt = rng.normal(size=(len(uniq), 8))
    tgt[5] = tgt[6]  # two distinct texts with identical vectors: a real tie
    tgt /= np.linalg.norm(tgt, axis=1, keepdims=True)
    src = tgt[gold] + 0.8 * rng.normal(size=(len(texts), 8))
    src /= np.linalg.norm(src, axis=1, keepdims=True)
    ranks, top, top_s = pair_ranks(src, tgt, gold, depth=10)
    s = score_matrix(src, tgt)
    for i in range(len(texts)):
        rel = np.zeros(len(uniq), bool)
        rel[gold[i]] = True
        assert ranks[i] == ranks_from_scores(s[i], rel)[0]
        assert np.array_equal(top_s[i], np.sort(s[i])[::-1][:10])
    tied = np.flatnonzero(np.isin(gold, [5, 6]))
    assert len(tied) and (ranks[tied] >= 2).all()  # a tie never counts as a hit


def test_identical_translations_are_all_found(tiny, tmp_path):
    """Lines identical in both files must be retrieved at rank 1 by any model: this checks
    that gold ids, pools and the metrics line up; a shuffled file must score lower."""
    lines = [f"sentence number {i} about {w}" for i, w in enumerate(["cats", "dogs", "rain"] * 12)]
    (tmp_path / "de.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "fr.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "en.txt").write_text("\n".join(lines[1:] + lines[:1]) + "\n")
    out = tmp_path / "out"
    assert main(["evaluate", "--model", str(tiny), "--benchmark", "bitext", "--source",
                 str(tmp_path), "--out", str(out), "--trec"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["settings"]["de-fr"] == {"accuracy@1": 1.0, "mrr@10": 1.0}
    assert m["settings"]["fr-de"] == {"accuracy@1": 1.0, "mrr@10": 1.0}
    assert m["settings"]["de-en"]["accuracy@1"] < 0.5
    assert m["counts"]["de-en"] == {"queries": 36, "pool": 36}
    assert set(m["summary"]) == {"all"} and len(m["settings"]) == 6
    run, qrels = read_run(out / "run.trec"), read_qrels(out / "qrels.trec")
    assert len(qrels) == 6 * 36 and run.groupby("qid").size().max() == 10
    top1 = run[run["rank"] == 1].merge(qrels, on=["qid", "docid"])
    assert set(top1["qid"].str.split("/").str[0]) >= {"de-fr", "fr-de"}
    assert "| de-fr | 100.0 | 100.0 | 36 | 36 |" in (out / "report.md").read_text()


def test_tatoeba_cli_default_source_and_both_directions(tiny, small_tatoeba,
                                                        tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HYBRID_DATA", str(small_tatoeba))
    out = tmp_path / "t"
    assert main(["evaluate", "--model", str(tiny), "--benchmark", "tatoeba", "--languages",
                 "th", "--directions", "both", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert list(m["settings"]) == ["th-en", "en-th"]
    assert set(m["summary"]) == {"xx-en", "en-xx"}
    assert m["summary"]["xx-en"] == m["settings"]["th-en"]
    assert m["counts"]["en-th"] == {"queries": 80, "pool": 80}
    for v in m["settings"].values():
        assert 0 <= v["accuracy@1"] <= v["mrr@10"] <= 1
    assert m["meta"]["source"] == str(small_tatoeba / "tatoeba") and m["meta"]["kind"] == "query"
    assert "mean xx-en" in capsys.readouterr().out
    # bad input: one line, nothing written
    bad = tmp_path / "bad"
    assert main(["evaluate", "--model", str(tiny), "--benchmark", "tatoeba", "--languages",
                 "en", "--out", str(bad)]) == 2
    assert not bad.exists()


def test_a_known_baseline_is_evaluated_with_its_settings(tiny, tmp_path):
    """A plain HF directory in the HF cache layout of LaBSE is evaluated with CLS pooling
    and no prefixes (hybrid.model.baselines), through the benchmark entry point."""
    import shutil

    from hybrid.evaluation.benchmarks import run_benchmark

    hf = tmp_path / "hf" / "models--sentence-transformers--LaBSE" / "snapshots" / "0123abc"
    hf.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny / name, hf / name)
    lines = [f"line {i} says {w}" for i, w in enumerate(["yes", "no", "maybe"] * 8)]
    for lang in ("de", "en"):
        (tmp_path / f"{lang}.txt").write_text("\n".join(lines) + "\n")
    m = run_benchmark("bitext", str(hf), tmp_path / "out", source=tmp_path, progress=False)
    assert m["settings"]["de-en"]["accuracy@1"] == 1.0
    model_dir = m["meta"]["model_dir"]
    assert "baselines" in model_dir
    assert json.loads((Path(model_dir) / "hybrid_encoder.json").read_text())["pooling"] == "cls"
