"""Ctrl-C at random moments never leaves a mixed output: `hybrid data prepare`, `hybrid data
pairs` and `hybrid evaluate` are run as real processes over an existing output of other
arguments and sent SIGINT at seeded random times; afterwards the output is the old complete
set or the new complete set (read back and cross-checked), and the command said one line.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from hybrid.data.lareqa import load_benchmark

pytestmark = pytest.mark.slow
TRIES = 3


def _hybrid(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hybrid", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _timed(args: list[str], env: dict) -> float:
    t = time.monotonic()
    p = _hybrid(args, env)
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    return time.monotonic() - t


def _interrupt_at_random(args: list[str], env: dict, span: float, rng: random.Random) -> tuple[int, str]:
    """Run `args`, send SIGINT after a random share of `span` seconds; (exit code, stderr)."""
    p = _hybrid(args, env)
    time.sleep(rng.uniform(0.3, 0.9) * span)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=300)
    return p.returncode, err


def _check_outcome(code: int, err: str) -> None:
    """Exit 0 (the signal came too late), killed by the signal while the interpreter was
    starting or exiting, or one line and exit 130. Which output is in place, the old or the
    new one, is the caller's check: the signal may land after the swap but before the exit."""
    errors = [x for x in err.splitlines() if x.startswith("error:")]
    if code in (0, -signal.SIGINT):
        assert not errors, err
    else:
        assert code == 130 and len(errors) == 1 and "interrupted" in errors[0], (code, err[-2000:])


@pytest.fixture
def env(tmp_path):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "PYTEST"))}
    e["HYBRID_CACHE"] = str(tmp_path / "cache")
    return e


def _prepared_languages(out: Path) -> list[str]:
    b = load_benchmark(out)  # all four files, consistent columns
    meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    langs = sorted(b.questions["lang"].unique())
    assert langs == sorted(meta["languages"]) == sorted(b.candidates["lang"].unique())
    assert meta["counts"]["total_questions"] == len(b.questions)
    return langs


def test_data_prepare_interrupted(xquad_dir, tmp_path, env):
    out = tmp_path / "prepared"
    base = ["data", "prepare", "--benchmark", "xquad-r", "--source", str(xquad_dir), "--out", str(out)]
    _timed([*base, "--languages", "en,de"], env)
    span = _timed([*base, "--languages", "en,de,es,zh,ar"], env)
    _timed([*base, "--languages", "en,de"], env)
    rng = random.Random(0)
    for _ in range(TRIES):
        code, err = _interrupt_at_random([*base, "--languages", "en,de,es,zh,ar"], env, span, rng)
        _check_outcome(code, err)
        langs = _prepared_languages(out)  # the old set or the new set, each whole
        assert langs in (["ar", "de", "en", "es", "zh"], ["de", "en"]), (code, langs)
        if code == 0:
            assert langs == ["ar", "de", "en", "es", "zh"]
        if langs != ["de", "en"]:
            _timed([*base, "--languages", "en,de"], env)


def _pairs_state(out: Path) -> int:
    df = pd.read_parquet(out / "pairs.parquet")
    meta = json.loads((out / "pairs_meta.json").read_text(encoding="utf-8"))
    assert meta["rows"] == len(df)
    return meta["sources"][0]["split"]["seed"]


def test_data_pairs_interrupted(xquad_dir, tmp_path, env):
    out = tmp_path / "pairs"
    base = ["data", "pairs", "--source", f"xquad-r:{xquad_dir}", "--out", str(out)]
    span = _timed([*base, "--split-seed", "1"], env)
    _timed([*base, "--split-seed", "0"], env)
    rng = random.Random(1)
    for _ in range(TRIES):
        code, err = _interrupt_at_random([*base, "--split-seed", "1"], env, span, rng)
        _check_outcome(code, err)
        seed = _pairs_state(out)  # the old table or the new one, each whole
        assert seed in (0, 1) and (code != 0 or seed == 1), (code, seed)
        if seed == 1:
            _timed([*base, "--split-seed", "0"], env)


def test_evaluate_interrupted(tiny, mlqa_dir, tmp_path, env):
    out = tmp_path / "eval"
    base = ["evaluate", "--model", str(tiny), "--benchmark", "mlqa-r", "--source", str(mlqa_dir),
            "--out", str(out)]
    _timed([*base, "--languages", "en,de"], env)
    env = {**env, "HYBRID_CACHE": str(tmp_path / "cache2")}  # every try encodes afresh
    span = _timed([*base, "--languages", "en,de,es"], env)
    old = {p.name: p.read_bytes() for p in out.iterdir()}
    rng = random.Random(2)
    for i in range(TRIES):
        e = {**env, "HYBRID_CACHE": str(tmp_path / f"cache-try{i}")}
        code, err = _interrupt_at_random([*base, "--languages", "en,de"], e, span, rng)
        _check_outcome(code, err)
        now = {p.name: p.read_bytes() for p in out.iterdir()}
        if now != old:  # then the new complete output
            assert sorted(json.loads(now["metrics.json"])["languages"]) == ["de", "en"]
            assert (out / "report.md").is_file() and (out / "retrieved.parquet").is_file()
            break
        assert code != 0  # the earlier complete output, byte for byte
