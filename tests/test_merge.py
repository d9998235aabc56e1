"""Weight interpolation (`hybrid.model.merge`, `hybrid merge`): the ends are the inputs bit
for bit, the middle is the mean, the output is a complete model without A's centering,
mismatched architectures and bad weights are refused with nothing written, and the weight
is chosen on the pairs table's validation ids only. Task arithmetic (`--base`): A plus a
weight times B's change from the base, A itself at weight 0."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from hybrid.cli import main
from hybrid.encoder import BiEncoder
from hybrid.errors import HybridError
from hybrid.model import make_tiny_model
from hybrid.model.merge import FORMULA_BASE, MERGE_FILE, ModelPair, interpolate, merge_models
from hybrid.model.merge_select import (
    choose_val_ids,
    parse_weights,
    select_weight,
    setting_map,
    validation_set,
)

LANGS = ["en", "de", "zh"]
TEXTS = ["Die Hauptstadt von Deutschland ist Berlin.", "東京は日本の首都です。", "a"]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("merge-models")
    return make_tiny_model(base / "a", seed=0), make_tiny_model(base / "b", seed=1)


def _frame(n_ids: int = 40) -> pd.DataFrame:
    return pd.DataFrame([
        {"dataset": "toy", "xling_id": f"id{i}", "lang": lg,
         "question": f"{lg} question {i} about topic {i % 7}",
         "positive": f"{lg} answer sentence {i} on topic {i % 7}", "context": None,
         "hard_negatives": []}
        for i in range(n_ids) for lg in LANGS])


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory) -> Path:
    from hybrid.data.pairs import write_pairs

    d = tmp_path_factory.mktemp("merge-pairs")
    write_pairs(_frame(), d, {"source": "test"})
    return d


def _weights(d: Path) -> dict[str, torch.Tensor]:
    return load_file(str(d / "model.safetensors"))


def _tree(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------- merging
def test_ends_are_the_inputs_bitwise_and_the_middle_is_the_mean(models, tmp_path):
    a, b = models
    wa, wb = _weights(a), _weights(b)
    for weight, want in ((0, wa), (1, wb)):
        out = merge_models(a, b, weight, tmp_path / f"m{weight}")
        got = _weights(out)
        assert set(got) == set(want)
        assert all(torch.equal(got[k], want[k]) and got[k].dtype == want[k].dtype for k in want)
    mid = _weights(merge_models(a, b, 0.5, tmp_path / "half"))
    assert any(not torch.equal(wa[k], wb[k]) for k in wa)
    for k in wa:
        torch.testing.assert_close(mid[k], (wa[k] + wb[k]) / 2, rtol=1e-6, atol=0)
    q = _weights(merge_models(a, b, 0.25, tmp_path / "quarter"))
    k = "embeddings.word_embeddings.weight"
    torch.testing.assert_close(q[k], 0.75 * wa[k] + 0.25 * wb[k], rtol=1e-6, atol=1e-7)


def test_interpolate_is_exact_at_the_ends_for_every_dtype():
    g = torch.Generator().manual_seed(0)
    for dt in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        a = {"x": torch.randn(50, generator=g).to(dt), "i": torch.arange(3)}
        b = {"x": torch.randn(50, generator=g).to(dt), "i": torch.arange(3)}
        assert torch.equal(interpolate(a, b, 0)["x"], a["x"])
        assert torch.equal(interpolate(a, b, 1.0)["x"], b["x"])
        m = interpolate(a, b, 0.3)
        assert m["x"].dtype == dt and torch.equal(m["i"], a["i"])


def test_task_arithmetic_adds_bs_change_from_the_base(models, tmp_path):
    a, b = models
    c = make_tiny_model(tmp_path / "c", seed=2)
    wa, wb, wc = _weights(a), _weights(b), _weights(c)
    zero = _weights(merge_models(a, b, 0, tmp_path / "m0", base=c))
    assert all(torch.equal(zero[k], wa[k]) for k in wa)
    half = merge_models(a, b, 0.5, tmp_path / "half", base=c)
    got = _weights(half)
    for k in wa:
        torch.testing.assert_close(got[k], wa[k] + 0.5 * (wb[k] - wc[k]), rtol=1e-6, atol=1e-6)
    k = "embeddings.word_embeddings.weight"
    assert not torch.equal(got[k], _weights(merge_models(a, b, 0.5, tmp_path / "lerp"))[k])
    # B's change from B itself is nothing: A bit for bit at any weight
    same = _weights(merge_models(a, b, 0.7, tmp_path / "same", base=b))
    assert all(torch.equal(same[k], wa[k]) for k in wa)
    # with A as the base, A + w * (B - A) is the interpolation
    lerp = _weights(merge_models(a, b, 0.25, tmp_path / "q", base=a))
    for k in wa:
        torch.testing.assert_close(lerp[k], 0.75 * wa[k] + 0.25 * wb[k], rtol=1e-6, atol=1e-6)
    rec = json.loads((half / MERGE_FILE).read_text())
    assert rec["formula"] == FORMULA_BASE and rec["weight"] == 0.5
    assert rec["base"]["path"] == str(c) and rec["base"]["weights_sha256"]
    assert json.loads((tmp_path / "lerp" / MERGE_FILE).read_text())["base"] is None
    # the encoder holds the same weights as the file
    enc = BiEncoder.from_pretrained(half)
    torch.testing.assert_close(enc.model.state_dict()[k], got[k], rtol=0, atol=0)


def test_a_base_of_another_architecture_or_an_input_out_is_refused(models, tmp_path, capsys):
    a, b = models
    other = _variant(a, tmp_path / "other", hidden_size=16)
    with pytest.raises(HybridError, match="config hidden_size 32 vs 16"):
        merge_models(a, b, 0.5, tmp_path / "out", base=other)
    capsys.readouterr()
    assert main(["merge", str(a), str(b), "--base", str(other), "--weight", "0.5",
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"merge {a} + {other}" in err[0], err
    c = make_tiny_model(tmp_path / "c", seed=2)
    with pytest.raises(HybridError, match="--out"):
        merge_models(a, b, 0.5, c, base=c)
    assert not (tmp_path / "out").exists() and not (c / MERGE_FILE).exists()


def test_the_output_is_a_complete_model_like_a(models, tmp_path):
    a, b = models
    out = merge_models(a, b, 0, tmp_path / "m")
    assert sorted(p.name for p in out.iterdir()) == sorted([*(p.name for p in a.iterdir()), MERGE_FILE])
    tree_a, tree_out = _tree(a), _tree(out)
    for name in ("config.json", "hybrid_encoder.json", "tokenizer.json", "modules.json",
                 "1_Pooling/config.json", "config_sentence_transformers.json"):
        got, want = json.loads(tree_out[name]), json.loads(tree_a[name])
        if name == "config.json":  # save_pretrained records the dtype, as a training's output
            got.pop("dtype", None), want.pop("dtype", None)
        assert got == want, name
    # BiEncoder loads it; at weight 0 it encodes exactly as A
    want = BiEncoder.from_pretrained(a).encode(TEXTS, "query", show_progress=False)
    got = BiEncoder.from_pretrained(out).encode(TEXTS, "query", show_progress=False)
    assert np.array_equal(got, want)
    mid = merge_models(a, b, 0.5, tmp_path / "mid")
    emb = BiEncoder.from_pretrained(mid).encode(TEXTS, "passage", show_progress=False)
    assert emb.shape == (3, 32) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    rec = json.loads((mid / MERGE_FILE).read_text())
    assert rec["weight"] == 0.5 and rec["a"]["path"] == str(a) and rec["b"]["path"] == str(b)
    assert set(rec["a"]["weights_sha256"]) == {"model.safetensors"} and rec["selection"] is None
    assert "not carried over" in rec["centering"]


def test_centering_of_a_is_not_carried_over(models, tmp_path):
    from hybrid.centering import FILE, Centering

    a, b = models
    ac = tmp_path / "a-centered"
    shutil.copytree(a, ac)
    rng = np.random.default_rng(0)
    means = {k: {"en": rng.normal(size=32)} for k in ("query", "passage")}
    Centering(means).save(ac)
    out = merge_models(ac, b, 0.5, tmp_path / "m")
    assert not (out / FILE).exists() and Centering.load(out) is None
    assert json.loads((out / MERGE_FILE).read_text())["a"]["centering"] is True


def _variant(tiny: Path, out: Path, **change) -> Path:
    """A tiny model of another architecture (config changes) or dtype ("dtype")."""
    from transformers import BertModel

    from hybrid.model.tiny import tiny_config

    enc = BiEncoder.from_pretrained(tiny)
    dtype = change.pop("dtype", None)
    if change:
        cfg = tiny_config()
        for k, v in change.items():
            setattr(cfg, k, v)
        torch.manual_seed(0)
        enc = BiEncoder(BertModel(cfg, add_pooling_layer=False), enc.tokenizer)
    if dtype is not None:
        enc.model.to(dtype)
    return enc.save(out)


@pytest.mark.parametrize("change, needle", [
    ({"hidden_size": 16}, "config hidden_size 32 vs 16"),
    ({"num_hidden_layers": 1}, "config num_hidden_layers 2 vs 1"),
    ({"dtype": torch.float16}, "dtype float32 vs float16"),
])
def test_different_architectures_are_refused_in_one_line_with_nothing_written(
        models, tmp_path, capsys, change, needle):
    a, _ = models
    other = _variant(a, tmp_path / "other", **change)
    out = tmp_path / "out"
    with pytest.raises(HybridError, match=needle):
        merge_models(a, other, 0.5, out)
    assert not out.exists()
    capsys.readouterr()
    assert main(["merge", str(a), str(other), "--weight", "0.5", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: merge ") and needle in err[0], err
    assert "different architectures" in err[0] and not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["other"]  # no temporary left either


def test_weight_out_of_range_is_refused(models, tmp_path, capsys):
    a, b = models
    for w in (-0.1, 1.5, math.nan):
        with pytest.raises(HybridError, match=r"weight: must be in \[0, 1\]"):
            merge_models(a, b, w, tmp_path / "out")
    assert main(["merge", str(a), str(b), "--weight", "1.01", "--out", str(tmp_path / "out")]) == 2
    assert "--weight: must be in [0, 1]" in capsys.readouterr().err
    with pytest.raises(HybridError, match="--weights"):
        parse_weights("0,2")
    assert parse_weights("1, 0.5,0,0.5") == [0, 0.5, 1]
    assert not (tmp_path / "out").exists()


def test_out_a_user_directory_is_refused_a_previous_merge_replaced(models, tmp_path):
    a, b = models
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    with pytest.raises(HybridError, match="not a merge output"):
        merge_models(a, b, 0.5, user)
    assert [p.name for p in user.iterdir()] == ["notes.txt"]
    with pytest.raises(HybridError, match="--out"):
        merge_models(a, b, 0.5, a)
    out = merge_models(a, b, 0.5, tmp_path / "m")
    merge_models(a, b, 1, out)  # a previous merge output: replaced whole
    assert json.loads((out / MERGE_FILE).read_text())["weight"] == 1
    k = "embeddings.word_embeddings.weight"
    assert torch.equal(_weights(out)[k], _weights(b)[k])


# ----------------------------------------------------------------------------- selection
def test_validation_set_holds_exactly_the_validation_ids(pairs_dir):
    from hybrid.train.data import split_validation

    train, val = split_validation(_frame(), 8)
    val_ids = set(zip(val["dataset"], val["xling_id"], strict=True))
    train_ids = set(zip(train["dataset"], train["xling_id"], strict=True))
    vs = validation_set(pairs_dir, 8)
    assert set(vs.ids) == val_ids and len(vs.ids) == 8
    used = {(q[0], q[1]) for q in vs.queries} | {(k[0], k[1]) for k in vs.answers}
    assert used == val_ids and not used & train_ids
    assert len(vs.queries) == 8 * len(LANGS) and vs.languages == sorted(LANGS)
    val_texts = set(val["question"]) | set(val["positive"])
    assert {q[3] for q in vs.queries} | {c[2] for c in vs.candidates} <= val_texts
    assert all(t not in val_texts for t in set(train["question"]) | set(train["positive"]))
    groups = vs.groups()
    assert len(groups["mono"]) == len(groups["pooled"]) == len(LANGS)
    assert all(len(r) == 1 for _, _, rel in groups["mono"] for r in rel)
    assert all(len(r) == len(LANGS) for _, _, rel in groups["pooled"] for r in rel)
    with pytest.raises(HybridError, match="--val-ids"):
        validation_set(pairs_dir, 0)


def test_setting_map_is_exact_map():
    # two queries, a pool of three; q0 ranks its item 2nd (AP 1/2), q1 ranks its two items
    # 3rd and 1st (AP (1 + 2/3) / 2)
    q = np.eye(3, dtype=np.float32)[:2]
    c = np.array([[0.5, 0.0, 0], [0.9, 0.1, 0], [0.0, 0.6, 0]], dtype=np.float32)
    groups = [(np.array([0, 1]), np.array([0, 1, 2]), [np.array([0]), np.array([0, 2])])]
    want = (0.5 + (1 + 2 / 3) / 2) / 2
    assert setting_map(q, c, groups) == pytest.approx(want)
    two = groups + [(np.array([0]), np.array([1]), [np.array([0])])]  # macro mean over groups
    assert setting_map(q, c, two) == pytest.approx((want + 1) / 2)


def test_select_weight_scores_each_weight_and_picks_one(models, pairs_dir):
    a, b = models
    pair = ModelPair.open(a, b)
    sel = select_weight(a, b, pairs_dir, [1, 0, 0.5], val_ids=8, pair=pair)
    assert [r["weight"] for r in sel.rows] == [0, 0.5, 1]
    for r in sel.rows:
        assert 0 < r["mono"] <= 1 and 0 < r["pooled"] <= 1
        assert r["score"] == pytest.approx((r["mono"] + r["pooled"]) / 2, abs=1e-6)
    assert sel.weight in (0, 0.5, 1)
    assert sel.weight == max(sel.rows, key=lambda r: (r["score"], -r["weight"]))["weight"]
    assert sel.val_ids == 8 and sel.queries == 24 and sel.languages == sorted(LANGS)
    assert sel["weight"] == sel.weight and sel["table"] == sel.rows and sel["val_ids"] == 8
    mono = select_weight(a, b, pairs_dir, [0, 1], val_ids=8, select="mono", pair=pair)
    assert mono.weight == max(mono.rows, key=lambda r: (r["mono"], -r["weight"]))["weight"]
    # weight 0 scores A itself: the same numbers as A merged with anything
    alone = select_weight(a, a, pairs_dir, [0], val_ids=8)
    assert alone.rows[0] == sel.rows[0]
    # ties go to the smaller weight: A with itself scores the same everywhere
    same = select_weight(a, a, pairs_dir, [0.5, 1], val_ids=8)
    assert same.rows[0]["score"] == same.rows[1]["score"] and same.weight == 0.5
    with pytest.raises(HybridError, match="--select"):
        select_weight(a, b, pairs_dir, [0], val_ids=8, select="best", pair=pair)


def test_val_ids_default_to_the_trainings_own(models, pairs_dir, tmp_path):
    a, b = models
    run = tmp_path / "run"
    shutil.copytree(a, run / "model")
    summary = {"config": {"data": {"val_ids": 5, "pairs": str(pairs_dir)}}}
    (run / "train_summary.json").write_text(json.dumps(summary))
    dirs = (run / "model", b)
    assert choose_val_ids(dirs, pairs_dir, None) == (5, [])
    assert choose_val_ids((a, b), pairs_dir, None) == (160, [])
    n, warn = choose_val_ids(dirs, pairs_dir, 8)
    assert n == 8 and "trained on by A" in warn[0]
    n, warn = choose_val_ids(dirs, tmp_path / "other-pairs", None)
    assert n == 5 and "was trained on" in warn[0]
    summary["config"]["data"]["val_ids"] = 0
    (run / "train_summary.json").write_text(json.dumps(summary))
    with pytest.raises(HybridError, match="val_ids=0"):
        choose_val_ids(dirs, pairs_dir, None)


# ----------------------------------------------------------------------------------- CLI
def test_cli_merge_with_a_weight_and_with_selection(models, pairs_dir, tmp_path, capsys):
    a, b = models
    out = tmp_path / "fixed"
    assert main(["merge", str(a), str(b), "--weight", "0.5", "--out", str(out)]) == 0
    assert f"at weight 0.5 -> {out}" in capsys.readouterr().out
    assert json.loads((out / MERGE_FILE).read_text())["weight"] == 0.5

    sel = tmp_path / "selected"
    assert main(["merge", str(a), str(b), "--select-on", str(pairs_dir), "--weights",
                 "0,0.5,1", "--val-ids", "8", "--out", str(sel)]) == 0
    cap = capsys.readouterr()
    rec = json.loads((sel / MERGE_FILE).read_text())
    chosen = rec["selection"]["weight"]
    assert rec["weight"] == chosen and [r["weight"] for r in rec["selection"]["table"]] == [0, 0.5, 1]
    assert "mono mAP" in cap.out and "<- chosen" in cap.out and f"at weight {chosen:g}" in cap.out
    assert cap.err.count("[merge] weight") == 3
    assert rec["selection"]["val_ids"] == 8 and rec["selection"]["queries"] == 24

    arith = tmp_path / "arith"
    assert main(["merge", str(a), str(b), "--base", str(a), "--select-on", str(pairs_dir),
                 "--weights", "0,1", "--val-ids", "8", "--out", str(arith)]) == 0
    cap = capsys.readouterr()
    rec = json.loads((arith / MERGE_FILE).read_text())
    assert rec["base"]["path"] == str(a) and f"x ({b} - {a}) -> {arith}" in cap.out
    # weight 0 is A: scored as the plain merge scored it
    plain = json.loads((sel / MERGE_FILE).read_text())["selection"]["table"]
    assert rec["selection"]["table"][0] == plain[0]

    assert main(["merge", str(a), str(b), "--out", str(tmp_path / "x")]) == 2
    assert main(["merge", str(a), str(b), "--weight", "0.5", "--select-on", str(pairs_dir),
                 "--out", str(tmp_path / "x")]) == 2
    assert "give exactly one" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
