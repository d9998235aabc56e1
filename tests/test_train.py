"""Training: configs and profiles, the validation split, resume guards, `hybrid batches`, and a
2-worker Ray Train run on the tiny model that survives a worker failure and resumes."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest
from faults import FAIL_ONCE_ENV, worker_path

from hybrid.cli import main
from hybrid.errors import HybridError
from hybrid.sampling import HybridBatchSampler
from hybrid.train import TrainConfig, load_profile, profile_names
from hybrid.train.loop import split_validation
from hybrid.train.trainer import check_resumable

LANGS = ["en", "de", "zh"]


def _table(n_ids: int = 40) -> pd.DataFrame:
    return pd.DataFrame([
        {"dataset": "toy", "xling_id": f"id{i}", "lang": lg,
         "question": f"{lg} question {i} about topic {i % 7}",
         "positive": f"{lg} answer sentence {i} on topic {i % 7}", "context": None,
         "hard_negatives": [f"{lg} other sentence {i}"]}
        for i in range(n_ids) for lg in LANGS])


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory):
    from hybrid.data.pairs import write_pairs

    d = tmp_path_factory.mktemp("pairs")
    write_pairs(_table(), d, {"source": "test"})
    return d


# ------------------------------------------------------------------ config
def test_profiles_load_and_differ():
    assert {"tiny", "quick", "paper"} <= set(profile_names())
    tiny, quick, paper = (load_profile(n) for n in ("tiny", "quick", "paper"))
    assert quick.model.model == "me5-small" and quick.data.batch_size == 32
    assert quick.model.freeze_embeddings and quick.optim.lr == 3e-5 and quick.optim.weight_decay == 0.01
    assert tiny.run.workers == 2 and tiny.run.steps < 10
    assert paper.data.batch_size > quick.data.batch_size and paper.run.max_failures > 0
    assert TrainConfig.from_dict(quick.to_dict()) == quick


def test_config_errors_are_one_line(tmp_path):
    with pytest.raises(HybridError, match="--profile: unknown profile 'nope'"):
        load_profile("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  batchsize: 3\n")
    with pytest.raises(HybridError, match="data.batchsize"):
        load_profile(str(bad))
    cfg = load_profile("tiny").override(**{"data.pairs": "p", "out": "o"})
    cfg.validate()
    with pytest.raises(HybridError, match="--alpha"):
        cfg.override(**{"data.alpha": 1.5}).validate()
    with pytest.raises(HybridError, match="not divisible"):
        cfg.override(**{"run.workers": 3}).validate()
    with pytest.raises(HybridError, match="unknown field"):
        cfg.override(**{"run.nope": 1})
    assert cfg.override(**{"data.grad_cache_chunk": 4}).validate().data.grad_cache_chunk == 4
    with pytest.raises(HybridError, match="--grad-cache-chunk: must be >= 1"):
        cfg.override(**{"data.grad_cache_chunk": 0}).validate()


def test_grad_cache_flag_reaches_the_config(pairs_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--profile", "tiny", "--pairs", str(pairs_dir), "--out", str(out),
                 "--grad-cache-chunk", "0"]) == 2
    assert "error: --grad-cache-chunk: must be >= 1, got 0" in capsys.readouterr().err
    assert not out.exists()


def test_validation_split_is_deterministic_disjoint_and_whole():
    table = _table(30)
    train, val = split_validation(table, 5)
    assert val["xling_id"].nunique() == 5 and len(val) == 5 * len(LANGS)
    assert not set(train["xling_id"]) & set(val["xling_id"])
    assert len(train) + len(val) == len(table)
    shuffled = table.sample(frac=1, random_state=1)
    assert set(split_validation(shuffled, 5)[1]["xling_id"]) == set(val["xling_id"])
    with pytest.raises(HybridError, match="data.val_ids"):
        split_validation(table, 30)


def test_resume_refuses_a_different_run(tmp_path):
    cfg = load_profile("tiny").override(**{"data.pairs": "p", "out": "o"})
    check_resumable(tmp_path, cfg)
    check_resumable(tmp_path, cfg.override(**{"run.steps": 99, "run.workers": 1}))  # allowed
    with pytest.raises(HybridError, match="data.strategy='hybrid'"):
        check_resumable(tmp_path, cfg.override(**{"data.strategy": "x-y"}))


# ------------------------------------------------------------- hybrid batches
def test_batches_command_writes_the_sampler_stream(pairs_dir, tmp_path, capsys):
    out = tmp_path / "b.jsonl"
    args = ["batches", "--pairs", str(pairs_dir), "--strategy", "hybrid", "--alpha", "0.5",
            "--batch-size", "8", "--steps", "30", "--seed", "7", "--out", str(out)]
    assert main(args) == 0
    assert "wrote 30 batches" in capsys.readouterr().out
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["step"] for x in lines] == list(range(30))
    want = HybridBatchSampler(_table(), "hybrid", 8, 0.5, seed=7)
    for line, batch in zip(lines, want.stream(0, 30), strict=True):
        assert set(line) == {"step", "type", "dataset", "pairs"}
        assert line == batch.to_json()
        ids = [p["xling_id"] for p in line["pairs"]]
        assert len(set(ids)) == 8
        if line["type"] == "mono":
            assert len({p["q_lang"] for p in line["pairs"]} | {p["p_lang"] for p in line["pairs"]}) == 1
        else:
            assert line["type"] == "cross" and all(p["q_lang"] != p["p_lang"] for p in line["pairs"])
    assert {x["type"] for x in lines} == {"mono", "cross"}
    first = out.read_bytes()
    assert main(args) == 0 and out.read_bytes() == first  # deterministic


def test_batches_command_errors(pairs_dir, tmp_path, capsys):
    out = tmp_path / "b.jsonl"
    assert main(["batches", "--pairs", str(pairs_dir), "--batch-size", "64", "--out", str(out)]) == 2
    assert "--batch-size: 64 > unique ids" in capsys.readouterr().err
    assert main(["batches", "--pairs", str(tmp_path / "none"), "--out", str(out)]) == 2
    assert not out.exists()


# ------------------------------------------------------------------ Ray runs
@pytest.mark.slow
def test_two_worker_ray_run_recovers_checkpoints_and_resumes(pairs_dir, tmp_path, monkeypatch):
    from hybrid.encoder import BiEncoder
    from hybrid.model import make_tiny_model
    from hybrid.train import train

    tiny = make_tiny_model(tmp_path / "tiny")
    out = tmp_path / "run"
    cfg = load_profile("tiny").override(**{
        "model.model": str(tiny), "data.pairs": str(pairs_dir), "out": str(out),
        "run.steps": 4, "run.max_failures": 1, "data.hard_negatives": 1,
        "run.callbacks": ["faults:fail_once"]})
    # the last worker fails once after step 3 (a per-step hook from tests/faults.py): Ray
    # restarts both from the step-2 checkpoint
    worker_path(monkeypatch)
    monkeypatch.setenv(FAIL_ONCE_ENV, f"3:{tmp_path / 'failed'}")
    assert train(cfg) == out.resolve()
    assert (tmp_path / "failed").exists()
    s = json.loads((out / "train_summary.json").read_text())
    assert s["steps"] == 4 and s["pairs_seen"] == 32 and s["workers"] == 2
    assert [g["start_step"] for g in s["segments"]] == [0, 2]
    assert [v["step"] for v in s["val_history"]] == [0, 2, 4]
    assert sum(s["batches_by_type"].values()) == 4 and s["pairs_per_s"] > 0
    assert s["best_val_loss"] == min(v["loss"] for v in s["val_history"])
    assert list((out / "ray" / "train").glob("step-*"))

    # a rerun with the same storage path (and no hook: run.callbacks may change) continues from
    # the final checkpoint's step, via the CLI with relative paths (Ray workers run elsewhere:
    # the trainer must resolve them first)
    monkeypatch.delenv(FAIL_ONCE_ENV)
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--profile", "tiny", "--model", str(tiny), "--pairs", os.path.relpath(pairs_dir),
                 "--out", "run", "--steps", "6", "--max-failures", "1", "--hard-negatives", "1"]) == 0
    s = json.loads((out / "train_summary.json").read_text())
    assert s["steps"] == 6 and [g["start_step"] for g in s["segments"]] == [0, 2, 4]
    assert [r["step"] for r in map(json.loads, (out / "train_log.jsonl").read_text().splitlines())] == [1, 2, 3, 4, 5, 6]
    assert [v["step"] for v in s["val_history"]] == [0, 2, 4, 6]
    enc = BiEncoder.from_pretrained(out / "model")
    emb = enc.encode(["en question 1 about topic 1"], "query", show_progress=False)
    assert emb.shape == (1, 32) and abs(float((emb ** 2).sum()) - 1) < 1e-4
