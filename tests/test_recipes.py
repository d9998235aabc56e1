"""Recipes (hybrid.recipes) and their verdict: named and custom recipes, the one-line errors,
every named training recipe resolving to a valid config, and the recipe check (Mo and Mul
against the best single strategy, bias against x-y's, margins against the seed spread)."""

from __future__ import annotations

import pytest

from hybrid.errors import HybridError
from hybrid.evaluation.compare_report import aggregate, verdict
from hybrid.recipes import RECIPES, recipe_from, recipes_from
from hybrid.train.config import resolve
from tests.test_compare_report import _run

ROWS = ["zero-shot", "x-x-mono", "x-y", "hybrid (alpha=0.5)"]


@pytest.mark.parametrize("name", [n for n, r in RECIPES.items() if r.kind == "train"])
def test_every_named_training_recipe_is_a_valid_config(name):
    cfg = resolve("tiny", RECIPES[name].overrides)
    for key, value in RECIPES[name].overrides.items():
        section, field = key.split(".")
        assert getattr(getattr(cfg, section), field) == value


def test_named_merge_recipes_merge_rows_the_default_comparison_has():
    merges = [r for r in RECIPES.values() if r.kind == "merge"]
    needed = sorted({x for r in merges for x in r.merge} - set(ROWS))  # training recipes
    assert all(RECIPES[x].kind == "train" for x in needed)
    got = recipes_from([*needed, *(r.name for r in merges)], ROWS)
    assert [r.name for r in got] == [*needed, *(r.name for r in merges)]
    assert RECIPES["mono-plus-distill"].merge == ("x-x-mono", "distill", "zero-shot")
    with pytest.raises(HybridError, match="'distill', which the comparison does not produce"):
        recipes_from(["mono-plus-distill"], ROWS)


def test_custom_recipes_and_their_errors():
    r = recipe_from({"name": "k4", "overrides": {"data.parallel_k": 4, "optim.multi_positive": True}})
    assert r.kind == "train" and r.overrides["data.parallel_k"] == 4
    m = recipe_from({"name": "soup", "merge": ["x-y", "zero-shot"]})
    assert m.kind == "merge" and m.merge == ("x-y", "zero-shot")
    t = recipe_from({"name": "sum", "merge": ["x-x-mono", "x-y", "zero-shot"]})
    assert t.merge == ("x-x-mono", "x-y", "zero-shot") and t.to_json()["merge"] == list(t.merge)
    bad = [("nope", "unknown recipe 'nope'"), ({"name": "x"}, "give 'overrides'"),
           ({"name": "x", "merge": ["a"]}, "'merge' must name two rows"),
           ({"name": "x", "merge": ["a", "b", "c", "d"]}, "or three [A, B, base]"),
           ({"name": "x", "overrides": {"a": 1}, "typo": 1}, "unknown key(s) typo"), (3, "expected a recipe name")]
    for entry, words in bad:
        with pytest.raises(HybridError, match=None) as exc:
            recipe_from(entry)
        assert words in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(HybridError, match="does not produce"):
        recipes_from([{"name": "s", "merge": ["x-x-mono", "hybrid (alpha=0.3)"]}], ROWS)
    with pytest.raises(HybridError, match="already a row"):
        recipes_from([{"name": "x-y", "overrides": {"data.alpha": 0.1}}], ROWS)
    # a merge may name an earlier recipe
    assert len(recipes_from(["multi-positive", {"name": "s", "merge": ["multi-positive", "x-y"]}], ROWS)) == 2


def test_a_training_recipe_distills_from_a_row():
    """`teacher`: a row label (the strategies', zero-shot, or an earlier recipe), only with a
    distillation weight; the flow passes that row's model dir as optim.distill_teacher."""
    from flows.compare import has_teacher, run_specs, train_overrides

    named = RECIPES["distill-from-mono"]
    assert named.teacher == "x-x-mono" and named.inputs == ("x-x-mono",)
    assert named.to_json()["teacher"] == "x-x-mono" and RECIPES["distill"].teacher is None
    custom = {"name": "d", "teacher": "multi-positive",
              "overrides": {"data.strategy": "x-y", "optim.distill_weight": 0.5}}
    assert recipe_from(custom).teacher == "multi-positive"
    assert [r.name for r in recipes_from(["multi-positive", custom], ROWS)] == ["multi-positive", "d"]
    with pytest.raises(HybridError, match="'d' distills from 'multi-positive', which the comparison"):
        recipes_from([custom], ROWS)
    for entry, words in [({"name": "x", "teacher": "x-y", "overrides": {"data.alpha": 0.1}},
                          "with 'optim.distill_weight' > 0"),
                         ({"name": "x", "teacher": "x-y", "merge": ["x-y", "zero-shot"]}, "a teacher is for a training"),
                         ({"name": "x", "teacher": 3, "overrides": {"optim.distill_weight": 1}}, "must name a row")]:
        with pytest.raises(HybridError) as exc:
            recipe_from(entry)
        assert words in str(exc.value), str(exc.value)

    spec = next(s for s in run_specs(["m"], ["x-x-mono"], 0.5, [], [1], False, [named])
                if s["label"] == "distill-from-mono")
    assert has_teacher(spec)
    o = train_overrides(spec, {"run.steps": 5}, teacher="/t/model")
    assert o["optim.distill_teacher"] == "/t/model" and o["optim.distill_weight"] == 1.0 and o["run.seed"] == 1
    assert "optim.distill_teacher" not in train_overrides(spec, {})
    assert resolve("tiny", {**o, "model.model": "me5-small"}).optim.distill_teacher == "/t/model"


def _strategies(tmp, seeds=(0,)):
    runs = []
    for seed in seeds:
        d = 0.002 * seed
        runs += [_run(tmp, "x-x-mono", "x-x-mono", seed, (0.80 + d, 0.60, 0.50, 300.0)),
                 _run(tmp, "x-y", "x-y", seed, (0.78, 0.70, 0.60 + d, 200.0)),
                 _run(tmp, "hybrid (alpha=0.5)", "hybrid", seed, (0.79, 0.69, 0.58, 210.0), alpha=0.5)]
    return runs


def test_recipe_check_against_the_best_single_strategy(tmp_path):
    runs = _strategies(tmp_path) + [
        _run(tmp_path, "good", "recipe", 0, (0.81, 0.70, 0.62, 190.0)),
        _run(tmp_path, "mono-short", "recipe", 0, (0.79, 0.70, 0.65, 150.0))]
    v = verdict(aggregate(runs))
    checks = {(c["recipe"], c["benchmark"]): c for c in v["recipes"]}
    good = checks[("good", "xquad-r")]
    assert [(m["figure"], m["against"]) for m in good["margins"]] == [
        ("mono.map", "x-x-mono"), ("multi.map", "x-y"), ("language_bias", "x-y")]
    assert [round(m["margin"], 6) for m in good["margins"]] == [0.01, 0.02, 10.0]
    assert good["meets"] is True and good["clear"] is None  # one seed: spread unmeasured
    short = checks[("mono-short", "xquad-r")]
    assert short["meets"] is False and short["clear"] is False
    assert "misses the target (Mo)" in short["sentence"]
    assert "meets the target on one seed" in good["sentence"]
    assert v["claim_close"] is not None  # the paper's claims ignore the recipe rows
    assert all(c["hybrid"] != "good" for c in v["checks"])



def test_centered_rows_are_judged_as_recipes(tmp_path):
    runs = _strategies(tmp_path) + [
        {**_run(tmp_path, "x-y + centering", "x-y", 0, (0.80, 0.71, 0.63, 180.0)), "centering": True}]
    checks = {(c["recipe"], c["benchmark"]): c for c in verdict(aggregate(runs))["recipes"]}
    c = checks[("x-y + centering", "xquad-r")]
    assert [m["against"] for m in c["margins"]] == ["x-x-mono", "x-y", "x-y"]  # uncentered references
    assert [round(m["margin"], 6) for m in c["margins"]] == [0.0, 0.03, 20.0] and c["meets"] is True
    assert {r for r, _ in checks} == {"x-y + centering"}  # uncentered strategies are not judged


def test_recipe_margins_must_exceed_the_seed_spread(tmp_path):
    runs = _strategies(tmp_path, seeds=(0, 1))
    for seed in (0, 1):  # Mo +0.01 over x-x-mono's mean, whose seed sd is 0.0014
        runs.append(_run(tmp_path, "clear", "recipe", seed, (0.812, 0.70, 0.63, 150.0)))
        runs.append(_run(tmp_path, "noisy", "recipe", seed, (0.80 + 0.0015 * (2 * seed), 0.70, 0.63, 150.0)))
    checks = {(c["recipe"], c["benchmark"]): c for c in verdict(aggregate(runs))["recipes"]}
    assert checks[("clear", "xquad-r")]["clear"] is True
    assert "MEETS the target" in checks[("clear", "xquad-r")]["sentence"]
    noisy = checks[("noisy", "xquad-r")]
    assert noisy["meets"] is True and noisy["clear"] is False  # Mo +0.0005 < sd 0.0021


def test_the_compare_flow_plans_recipe_rows_after_the_rows_they_merge():
    from flows.compare import (
        check_recipes,
        merge_input,
        run_specs,
        strategy_labels,
        train_overrides,
    )

    labels = strategy_labels(["x-x-mono", "x-y", "hybrid"], 0.5, [], True)
    assert labels == ROWS
    chosen = recipes_from(["merge-mono-cross", "multi-positive"], labels)
    specs = run_specs(["m"], ["x-x-mono", "x-y", "hybrid"], 0.5, [], [0, 1], True, chosen)
    assert [s["label"] for s in specs] == ["zero-shot", *ROWS[1:], "merge-mono-cross", "multi-positive",
                                           *ROWS[1:], "merge-mono-cross", "multi-positive"]
    mp = next(s for s in specs if s["label"] == "multi-positive" and s["seed"] == 1)
    o = train_overrides(mp, {"run.steps": 5, "data.alpha": 0.9})
    assert o["data.parallel_k"] == 2 and o["data.alpha"] == 0.5 and o["run.seed"] == 1 and o["run.steps"] == 5
    check_recipes("tiny", specs, {})
    bad = run_specs(["m"], ["x-y"], 0.5, [], [0], False, [recipe_from({"name": "b", "overrides": {"data.parallel_k": 0}})])
    with pytest.raises(HybridError, match="recipes: 'b': "):
        check_recipes("tiny", bad, {})
    done = [{"model": "m", "label": "zero-shot", "seed": None, "model_dir": "Z"},
            {"model": "m", "label": "x-y", "seed": 0, "model_dir": "A0"},
            {"model": "m", "label": "x-y + centering", "seed": 1, "model_dir": "C1", "centering": True},
            {"model": "m", "label": "x-y", "seed": 1, "model_dir": "A1"}]
    spec = {"model": "m", "label": "s", "seed": 1}
    assert merge_input(done, spec, "x-y") == "A1" and merge_input(done, spec, "zero-shot") == "Z"
    with pytest.raises(HybridError, match="has no row"):
        merge_input(done, spec, "x-x-mono")
