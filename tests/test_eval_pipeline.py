"""Sharded encoding on Ray with the tiny model, its cache, and `hybrid evaluate` end to end."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from hybrid.cli import main
from hybrid.data import article_split, read_lareqa
from hybrid.evaluation import encode_texts, evaluate
from hybrid.evaluation.encode import cache_entry


@pytest.fixture(scope="module")
def sentences(xquad_dir):
    c = read_lareqa(xquad_dir, "xquad-r", ["en", "th"]).candidates
    return c.iloc[::12].reset_index(drop=True)  # ~170 sentences of both scripts


def test_shard_count_does_not_change_embeddings_and_parts_are_reused(
        ray_session, tiny, sentences, tmp_path):
    ids, texts = sentences["cid"], sentences["sentence"]
    kw = {"batch_size": 16, "progress": False}
    three = encode_texts(tiny, ids, texts, "passage", shards=3, cache=tmp_path / "a", **kw)
    one = encode_texts(tiny, ids, texts, "passage", shards=1, cache=tmp_path / "b", **kw)
    assert one.ids.tolist() == ids.tolist()
    assert np.array_equal(one.vectors, three.vectors)  # bit-identical
    assert np.allclose(np.linalg.norm(one.vectors, axis=1), 1.0, atol=1e-5)

    entry = cache_entry(tiny, ids, texts, "passage", batch_size=16, cache=tmp_path / "a")
    parts = sorted(entry.glob("part-*-of-003.npy"))
    assert len(parts) == 3
    # Damage one part: only that part is recomputed, the others are read back untouched.
    mtimes = {p.name: p.stat().st_mtime_ns for p in parts}
    arr = np.load(parts[1])
    arr[0, 0] += 1.0
    np.save(parts[1], arr)
    again = encode_texts(tiny, ids, texts, "passage", shards=3, cache=tmp_path / "a", **kw)
    assert np.array_equal(again.vectors, one.vectors)
    after = {p.name: p.stat().st_mtime_ns for p in sorted(entry.glob("part-*-of-003.npy"))}
    assert after[parts[0].name] == mtimes[parts[0].name]
    assert after[parts[2].name] == mtimes[parts[2].name]
    assert after[parts[1].name] != mtimes[parts[1].name]
    # A complete set serves any shard count without new work.
    two = encode_texts(tiny, ids, texts, "passage", shards=2, cache=tmp_path / "a", **kw)
    assert np.array_equal(two.vectors, one.vectors) and not list(entry.glob("part-*-of-002*"))


IN_PROCESS = """
import sys, numpy as np, pandas as pd
from hybrid.evaluation import encode_texts
t = pd.read_parquet(sys.argv[2])
e = encode_texts(sys.argv[1], t["cid"], t["sentence"], "passage", shards=1, batch_size=16,
                 progress=False, cache=sys.argv[3])
np.save(sys.argv[4], e.vectors)
ray = sys.modules.get("ray")
print("ray initialised" if ray is not None and ray.is_initialized() else "no ray")
"""


def test_one_shard_without_ray_runs_in_process_with_the_same_vectors(
        ray_session, tiny, sentences, tmp_path):
    """With no Ray initialised and no RAY_ADDRESS, one shard is encoded in the calling process
    (`hybrid.raycluster.local_only`): no Ray is started, the vectors are those of N Ray shards
    bit for bit, and they land in the same cache entry."""
    table = tmp_path / "t.parquet"
    sentences.to_parquet(table)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run([sys.executable, "-c", IN_PROCESS, str(tiny), str(table), str(tmp_path / "c"),
                           str(tmp_path / "v.npy")], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "no ray"
    ids, texts = sentences["cid"], sentences["sentence"]
    ray_shards = encode_texts(tiny, ids, texts, "passage", shards=3, batch_size=16, progress=False,
                              cache=tmp_path / "r")
    assert np.array_equal(np.load(tmp_path / "v.npy"), ray_shards.vectors)
    entry = cache_entry(tiny, ids, texts, "passage", batch_size=16, cache=tmp_path / "c")
    assert {p.name.split(".")[0] for p in entry.glob("part-*")} == {"part-000-of-001"}


def test_bf16_is_close_but_cached_apart(ray_session, tiny, sentences, tmp_path):
    ids, texts = sentences["cid"][:40], sentences["sentence"][:40]
    fp32 = encode_texts(tiny, ids, texts, "query", cache=tmp_path, progress=False)
    bf16 = encode_texts(tiny, ids, texts, "query", bf16=True, cache=tmp_path, progress=False)
    cos = (fp32.vectors * bf16.vectors).sum(axis=1)
    assert not np.array_equal(fp32.vectors, bf16.vectors) and cos.min() > 0.97
    assert len(list(tmp_path.rglob("part-*.json"))) == 2


def test_evaluate_mlqa_writes_every_output(ray_session, tiny, mlqa_dir, tmp_path):
    out = tmp_path / "eval"
    code = main(["evaluate", "--model", str(tiny), "--benchmark", "mlqa-r", "--source",
                 str(mlqa_dir), "--out", str(out), "--index", "hnsw"])
    assert code == 0
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["summary"]) == {"mono", "cross", "multi", "language_bias"}
    assert set(m["summary"]["mono"]) == {"map", "r@1", "r@10", "mrr@10", "ndcg@10", "r@100"}
    assert len(m["settings"]) == 56 and "de-en" in m["settings"] and "de-multi" in m["settings"]
    assert m["skipped"]["cross"] > 0 and m["skipped"]["mono"] == 0
    assert 0.0 < m["search"]["recall@100_vs_flat"] <= 1.0
    matrix = pd.read_csv(out / "map_matrix.csv", index_col=0)
    assert list(matrix.columns) == ["ar", "de", "en", "es", "hi", "vi", "zh", "multi"]
    assert matrix.loc["de", "en"] == pytest.approx(m["settings"]["de-en"]["map"], abs=1e-6)
    assert matrix.loc["zh", "multi"] == pytest.approx(m["settings"]["zh-multi"]["map"], abs=1e-6)
    assert (out / "map_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    assert "| Model | Mo | Cr | Mul | Language bias |" in report and "| zh |" in report
    run = pd.read_parquet(out / "retrieved.parquet")
    assert set(run.columns) == {"qid", "rank", "cid", "score"} and run["rank"].max() == 10


def test_evaluate_heldout_split_and_languages(ray_session, tiny, xquad_dir, tmp_path):
    m = evaluate(tiny, "xquad-r", xquad_dir, tmp_path / "ho", split="heldout",
                 languages=["en", "de"], heldout_fraction=0.1, progress=False)
    full = read_lareqa(xquad_dir, "xquad-r")
    _, heldout = article_split(full, heldout_fraction=0.1, seed=0)
    expect = full.questions[full.questions["article"].isin(heldout) & full.questions["lang"].isin(["en", "de"])]
    assert m["meta"]["questions"] == len(expect) and m["languages"] == ["de", "en"]
    assert sorted(m["settings"]) == ["de-de", "de-en", "de-multi", "en-de", "en-en", "en-multi"]


@pytest.mark.parametrize("args, message", [
    (["--split", "test"], "--split"),
    (["--languages", "en,th"], "--languages"),
    (["--index", "annoy"], "--index"),
    (["--shards", "0"], "--shards"),
])
def test_bad_input_is_a_one_line_error(tiny, mlqa_dir, tmp_path, capsys, args, message):
    code = main(["evaluate", "--model", str(tiny), "--benchmark", "mlqa-r", "--source",
                 str(mlqa_dir), "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "o" / "metrics.json").exists()
