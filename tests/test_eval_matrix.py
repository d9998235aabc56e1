"""Settings, the matrix's exact metrics against plain per-query references, and search."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from hybrid.data import read_lareqa
from hybrid.errors import HybridError
from hybrid.evaluation import (
    METRICS,
    DenseIndex,
    Embeddings,
    compute_matrix,
    recall_vs_flat,
    setting_counts,
    settings_for,
)
from hybrid.evaluation.matrix import score_matrix
from hybrid.evaluation.metrics import per_query, ranks_from_scores
from hybrid.langs import MLQA_R_LANGS, XQUAD_R_LANGS


@pytest.fixture(scope="module")
def xquad_small(xquad_dir):
    """Real XQuAD-R tables (3 languages) cut to a few articles to keep the loops short."""
    b = read_lareqa(xquad_dir, "xquad-r", ["de", "en", "zh"])
    return b.subset(articles=b.articles[:6])


@pytest.fixture(scope="module")
def mlqa(mlqa_dir):
    return read_lareqa(mlqa_dir, "mlqa-r")


def _random_embeddings(b, seed=0, dim=32):
    rng = np.random.default_rng(seed)

    def unit(n):
        v = rng.standard_normal((n, dim)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    return Embeddings(b.questions["qid"], unit(len(b.questions))), Embeddings(b.candidates["cid"], unit(len(b.candidates)))


def _reference(b, q, c, key):
    """Per-query loop for one setting: (sklearn AP list, every metric from a full argsort)."""
    x, y = key.split("-")
    pool = b.candidates if y == "multi" else b.candidates[b.candidates["lang"] == y]
    vecs = c.aligned(pool["cid"])
    relevant = b.qrels.groupby("qid")["cid"].apply(set)
    aps, ranks = [], []
    for qid in b.questions.loc[b.questions["lang"] == x, "qid"]:
        labels = pool["cid"].isin(relevant.get(qid, set())).to_numpy()
        if not labels.any():
            continue
        scores = score_matrix(q.aligned([qid]), vecs)[0]
        aps.append(average_precision_score(labels, scores))
        position = np.empty(len(scores), dtype=np.int64)
        position[np.argsort(-scores, kind="stable")] = np.arange(1, len(scores) + 1)
        ranks.append(np.sort(position[labels]).astype(float))
    width = max(len(r) for r in ranks)
    padded = np.array([np.pad(r, (0, width - len(r)), constant_values=np.nan) for r in ranks])
    return aps, {k: float(v.mean()) for k, v in per_query(padded).items()}


def test_settings_counts_132_and_56():
    xs, ms = settings_for(XQUAD_R_LANGS), settings_for(MLQA_R_LANGS)
    assert len(xs) == 132 and len(ms) == 56
    for settings, n in ((xs, 11), (ms, 7)):
        kinds = [s.kind for s in settings]
        assert (kinds.count("mono"), kinds.count("cross"), kinds.count("multi")) == (n, n * (n - 1), n)
        assert len({s.key for s in settings}) == len(settings)
    assert {"de-en", "en-en", "de-multi"} <= {s.key for s in xs}
    with pytest.raises(HybridError, match="duplicate"):
        settings_for(["en", "en"])


def test_mlqa_skip_counts_follow_the_pool_language(mlqa):
    counts = setting_counts(mlqa.questions, mlqa.candidates, mlqa.qrels, MLQA_R_LANGS)
    ids = {x: set(mlqa.questions.loc[mlqa.questions["lang"] == x, "xling_id"]) for x in MLQA_R_LANGS}
    skipped = {"mono": 0, "cross": 0, "multi": 0}
    for s in settings_for(MLQA_R_LANGS):
        mine = ids[s.query_lang]
        expect = len(mine) if s.kind != "cross" else len(mine & ids[s.pool_lang])
        assert counts[s.key] == {"queries": expect, "skipped": len(mine) - expect}, s.key
        skipped[s.kind] += len(mine) - expect
    assert skipped["mono"] == skipped["multi"] == 0 and skipped["cross"] > 0
    q, c = _random_embeddings(mlqa)
    m = compute_matrix(mlqa, q, c, progress=False)
    assert m["counts"] == counts and m["skipped"] == skipped
    assert len(m["settings"]) == 56


def test_map_equals_sklearn_on_real_xquad_qrels(xquad_small):
    q, c = _random_embeddings(xquad_small, seed=1)
    m = compute_matrix(xquad_small, q, c, progress=False)
    assert len(m["settings"]) == 3 + 6 + 3 and m["skipped"] == {"mono": 0, "cross": 0, "multi": 0}
    for key, values in m["settings"].items():
        aps, ref = _reference(xquad_small, q, c, key)
        assert m["counts"][key]["queries"] == len(aps)
        assert values["map"] == pytest.approx(np.mean(aps), abs=1e-6), key
        for metric in METRICS:
            assert values[metric] == pytest.approx(ref[metric], abs=1e-6), (key, metric)
    for kind in ("mono", "cross", "multi"):
        keys = [k for k in m["settings"] if (k.endswith("multi") if kind == "multi" else
                                              (k[:2] == k[3:]) == (kind == "mono") and not k.endswith("multi"))]
        assert m["summary"][kind]["map"] == pytest.approx(np.mean([m["settings"][k]["map"] for k in keys]))


def test_map_equals_sklearn_on_mlqa_with_ties(mlqa):
    # Ternary embeddings give integer scores: many ties, which sklearn's AP and the
    # matrix's pessimistic rank rule resolve identically.
    rng = np.random.default_rng(2)
    q = Embeddings(mlqa.questions["qid"], rng.integers(-1, 2, (len(mlqa.questions), 6)))
    c = Embeddings(mlqa.candidates["cid"], rng.integers(-1, 2, (len(mlqa.candidates), 6)))
    m = compute_matrix(mlqa, q, c, languages=["de", "en", "hi"], progress=False)
    assert len(m["settings"]) == 3 + 6 + 3
    sub = mlqa.subset(languages=["de", "en", "hi"])
    for key, values in m["settings"].items():
        aps, _ = _reference(sub, q, c, key)
        assert values["map"] == pytest.approx(np.mean(aps), abs=1e-6), key


def test_language_bias_is_the_spread_of_parallel_answers(xquad_small):
    q, c = _random_embeddings(xquad_small, seed=3)
    m = compute_matrix(xquad_small, q, c, progress=False)
    pool = c.aligned(xquad_small.candidates["cid"])
    relevant = xquad_small.qrels.groupby("qid")["cid"].apply(set)
    spreads = []
    for qid in xquad_small.questions.loc[xquad_small.questions["lang"] == "zh", "qid"]:
        labels = xquad_small.candidates["cid"].isin(relevant[qid]).to_numpy()
        r = ranks_from_scores(score_matrix(q.aligned([qid]), pool)[0], labels)
        spreads.append(r.max() - r.min())
    assert m["settings"]["zh-multi"]["language_bias"] == pytest.approx(np.mean(spreads))
    biases = [m["settings"][f"{x}-multi"]["language_bias"] for x in ("de", "en", "zh")]
    assert m["summary"]["language_bias"] == pytest.approx(np.mean(biases))


def test_missing_embedding_is_a_one_line_error(xquad_small):
    q, c = _random_embeddings(xquad_small)
    short = Embeddings(c.ids[1:], c.vectors[1:])
    with pytest.raises(HybridError, match="candidate embeddings: no embedding for id"):
        compute_matrix(xquad_small, q, short, progress=False)


def test_flat_search_is_exact_and_approximate_recall_is_reported(xquad_small):
    q, c = _random_embeddings(xquad_small, seed=4)
    run = DenseIndex("flat").add(c).search(q, k=10)
    assert len(run) == 10 * len(q) and run.groupby("qid")["rank"].apply(list).map(
        lambda r: r == list(range(1, 11))).all()
    first = q.ids[0]
    scores = c.vectors @ q.vectors[0]
    expected = c.ids[np.argsort(-scores, kind="stable")[:10]]
    assert run.loc[run["qid"] == first, "cid"].tolist() == expected.tolist()
    # R@10 of the pooled settings from the exact run equals the matrix's (no ties here).
    m = compute_matrix(xquad_small, q, c, progress=False)
    relevant = xquad_small.qrels.groupby("qid")["cid"].apply(set)
    found = run.assign(hit=[cid in relevant[qid] for qid, cid in zip(run["qid"], run["cid"], strict=True)])
    per_q = found.groupby("qid")["hit"].sum() / relevant.reindex(found["qid"].unique()).map(len)
    langs = per_q.index.str[:2]
    for x in ("de", "en", "zh"):
        assert per_q[langs == x].mean() == pytest.approx(m["settings"][f"{x}-multi"]["r@10"])
    for kind, floor in (("flat", 1.0), ("hnsw", 0.9), ("ivf", 0.5)):
        recall = recall_vs_flat(DenseIndex(kind).add(c), q.vectors, c, k=20)
        assert floor <= recall <= 1.0, kind
    with pytest.raises(HybridError, match="--index"):
        DenseIndex("annoy")
