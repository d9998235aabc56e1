"""Faults with real processes and real signals: a Ray Train worker SIGKILLed mid-training, a
truncated training checkpoint, a truncated shard of the embedding cache."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from faults import PAUSE_ENV, worker_path

from hybrid.cli import main
from hybrid.data.pairs import write_pairs
from hybrid.errors import HybridError
from hybrid.model import make_tiny_model
from hybrid.train.checkpoint import STATE_FILE, check_run_checkpoints, state_intact, write_state

LANGS = ["en", "de", "zh"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("rel-model") / "tiny")


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("rel-pairs")
    write_pairs(pd.DataFrame([
        {"dataset": "toy", "xling_id": f"id{i}", "lang": lg, "question": f"{lg} question {i} topic {i % 7}",
         "positive": f"{lg} answer {i} on topic {i % 7}", "context": None, "hard_negatives": []}
        for i in range(40) for lg in LANGS]), d, {"source": "test"})
    return d


def _alive(pid: int, wait: float = 10) -> bool:
    """True if `pid` still runs after `wait` seconds (a zombie awaiting its reaper is dead)."""
    end = time.monotonic() + wait
    while time.monotonic() < end:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        if state in ("Z", "X"):
            return False
        time.sleep(0.2)
    return True


def _kill_when_paused(marker: Path, killed: dict, timeout: float = 240) -> threading.Thread:
    """Wait for the paused worker's pid in `marker`, SIGKILL it, record the pid."""
    def run():
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if marker.is_file() and marker.read_text().strip():
                pid = int(marker.read_text())
                os.kill(pid, signal.SIGKILL)
                killed["pid"] = pid
                return
            time.sleep(0.1)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _checkpoints(out: Path) -> list[Path]:
    return sorted((out / "ray" / "train").glob("step-*"))


@pytest.mark.slow
def test_sigkilled_worker_resumes_from_checkpoint_and_truncated_checkpoint_falls_back(
        tiny, pairs_dir, tmp_path, monkeypatch, capfd):
    import yaml

    from hybrid.train import load_profile

    out = tmp_path / "run"
    marker = tmp_path / "worker.pid"
    profile = tmp_path / "tiny-pause.yaml"  # the tiny profile with the pause hook of tests/faults.py
    cfg = load_profile("tiny").to_dict()
    cfg["run"]["callbacks"] = ["faults:pause"]
    profile.write_text(yaml.safe_dump({k: v for k, v in cfg.items() if k != "out"}))
    worker_path(monkeypatch)
    base = ["train", "--profile", str(profile), "--model", str(tiny), "--pairs", str(pairs_dir),
            "--out", str(out), "--max-failures", "1"]
    # the last of 2 workers stops after step 3 (checkpoint at step 2) and is SIGKILLed there
    monkeypatch.setenv(PAUSE_ENV, f"3:{marker}")
    killed: dict = {}
    killer = _kill_when_paused(marker, killed)
    assert main([*base, "--steps", "6"]) == 0
    killer.join(5)
    assert killed, "the worker never paused"
    assert not _alive(killed["pid"])
    s = json.loads((out / "train_summary.json").read_text())
    assert s["steps"] == 6 and s["max_steps"] == 6 and s["pairs_seen"] == 6 * 8
    assert [g["start_step"] for g in s["segments"]] == [0, 2]  # restarted from the step-2 checkpoint
    assert [json.loads(x)["step"] for x in (out / "train_log.jsonl").read_text().splitlines()] == [1, 2, 3, 4, 5, 6]
    assert [v["step"] for v in s["val_history"]] == [0, 2, 4, 6]
    kept = _checkpoints(out)
    assert {"step-000004", "step-000006-final"} <= {p.name for p in kept}
    assert all(state_intact(p) for p in kept)  # sealed with sha256, none damaged
    kept = [p for p in kept if p.name in ("step-000004", "step-000006-final")]
    assert (out / "model" / "model.safetensors").is_file()

    # Truncate the newest checkpoint: a longer rerun detects it and resumes from step 4.
    monkeypatch.delenv(PAUSE_ENV)
    state = kept[-1] / STATE_FILE
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    assert not state_intact(kept[-1])
    capfd.readouterr()
    assert main([*base, "--steps", "8"]) == 0
    assert f"checkpoint {kept[-1]} is damaged" in capfd.readouterr().out
    s = json.loads((out / "train_summary.json").read_text())
    assert s["steps"] == 8 and [g["start_step"] for g in s["segments"]] == [0, 2, 4]
    assert [json.loads(x)["step"] for x in (out / "train_log.jsonl").read_text().splitlines()] == list(range(1, 9))
    assert all(state_intact(p) for p in _checkpoints(out))

    # Every checkpoint damaged: a one-line error, the trained model stays.
    for p in _checkpoints(out):
        (p / STATE_FILE).write_bytes(b"")
    model_bytes = (out / "model" / "model.safetensors").read_bytes()
    capfd.readouterr()
    assert main([*base, "--steps", "10", "--max-failures", "0"]) == 2
    err = [x for x in capfd.readouterr().err.splitlines() if x.startswith("error:")]
    assert len(err) == 1 and "checkpoint damaged" in err[0] and "remove it to start the run over" in err[0]
    assert (out / "model" / "model.safetensors").read_bytes() == model_bytes


def test_a_run_whose_checkpoints_are_all_damaged_is_refused_before_ray_starts(tmp_path):
    run = tmp_path / "run"
    check_run_checkpoints(run)  # no run yet
    for step in (2, 4):
        (run / f"step-00000{step}").mkdir(parents=True)
        write_state(run / f"step-00000{step}", {"step": step})
    (run / "step-000004" / STATE_FILE).write_bytes(b"cut")
    check_run_checkpoints(run)  # the newest is damaged, step 2 is intact: workers fall back
    (run / "step-000002" / STATE_FILE).write_bytes(b"")
    with pytest.raises(HybridError, match=r"step-000004: checkpoint damaged .* remove it to start the run over"):
        check_run_checkpoints(run)


@pytest.mark.slow
def test_truncated_embedding_shard_is_detected_and_recomputed(tiny, tmp_path):
    import ray

    from hybrid.evaluation import encode_texts
    from hybrid.evaluation.embeddings import verify
    from hybrid.evaluation.encode import cache_entry

    ids = [f"s{i}" for i in range(60)]
    texts = [f"sentence number {i} about topic {i % 5}" for i in range(60)]
    kw = {"batch_size": 8, "progress": False, "cache": tmp_path}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        first = encode_texts(tiny, ids, texts, "passage", shards=2, **kw)
        entry = cache_entry(tiny, ids, texts, "passage", batch_size=8, cache=tmp_path)
        parts = sorted(entry.glob("part-*-of-002.npy"))
        assert len(parts) == 2 and all(verify(entry, p.stem) for p in parts)
        for suffix in (".npy", ".ids.npy"):  # a torn write of either file of a part
            f = entry / f"{parts[1].stem}{suffix}"
            f.write_bytes(f.read_bytes()[:100])
            assert not verify(entry, parts[1].stem)
            untouched = parts[0].stat().st_mtime_ns
            again = encode_texts(tiny, ids, texts, "passage", shards=2, **kw)
            assert verify(entry, parts[1].stem) and parts[0].stat().st_mtime_ns == untouched
            assert again.ids.tolist() == ids and np.array_equal(again.vectors, first.vectors)
    finally:
        ray.shutdown()
