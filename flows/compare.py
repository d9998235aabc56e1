"""`hybrid-compare`: the paper's experiment. The same data, seed, model and step budget, trained
with each batch strategy (default x-x-mono, x-y and hybrid alpha 0.5; optionally an alpha
grid, several seeds, several models), plus the untrained model as a zero-shot row; each
evaluated on XQuAD-R (held-out articles) and on MLQA-R when its data is available (and on
Tatoeba out of domain), each model also with per-language centering; one MLflow
parent run with a nested child run per evaluated model; a comparison report with a computed
verdict on the paper's claims (`hybrid.evaluation.compare_report`).

Training, encoding and the matrix are the pipeline's cached tasks with the pipeline's keys:
with the same `results_dir` (default `runs/pipeline`, the pipeline's) a training whose config
equals a pipeline run's is a cache hit, and an identical comparison re-run trains nothing.
Trainings fan out with `.map` in waves of `parallel` runs (default 1: a 2-core machine runs
one training at a time; on a Ray cluster raise it); each wave's models (with the zero-shot
models in the first wave) are then evaluated in one fan-out (encoding `.map` over models x
benchmarks, then the matrices) and get their child runs (`.map`), so results land wave by wave.

Recipes (`hybrid.recipes`, issue #19) are rows next to the strategies: a training recipe is one
more training per seed with the recipe's overrides; a merge recipe interpolates two rows of the
same seed, or adds one row's change from a third to another (task arithmetic; `tasks.merge`:
the weight chosen on the training table's validation ids), and costs no training. The verdict judges each recipe against the best single strategy.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, unmapped

from flows.common import (
    benchmark_plan,
    data_dir,
    default_benchmarks,
    default_sources,
    ensure_ray,
    eval_splits_for,
    evaluate_models,
    prepare_lareqa,
    training_overrides,
)
from hybrid.errors import HybridError
from hybrid.evaluation.compare_report import CENTERED, RECIPE, TOLERANCE, ZERO_SHOT, strategy_label
from hybrid.io import write_json
from hybrid.recipes import Recipe, recipes_from
from hybrid.train.config import resolve
from tasks.centering import center_model_task
from tasks.compare import compare_report_task, finish_parent_run, log_child_run, start_parent_run
from tasks.data import build_pairs_table
from tasks.evaluate import resolve_model_task
from tasks.hashing import dict_hash
from tasks.merge import merge_models_task
from tasks.train import train_model

DEFAULT_STRATEGIES = ("x-x-mono", "x-y", "hybrid")
DEFAULT_MERGE_WEIGHTS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def run_specs(models: list[str], strategies: list[str], alpha: float, alphas: list[float],
              seeds: list[int], zero_shot: bool, recipes: list[Recipe] = ()) -> list[dict]:
    """One dict per model to evaluate: zero-shot rows first, then seed x model x (strategy x
    alpha, then recipe). Seed-major: every strategy's first seed trains before any second
    seed, so a complete one-seed comparison exists as early as possible and later seeds add
    the spread; a merge recipe comes after the rows it merges."""
    specs = [{"model": m, "strategy": ZERO_SHOT, "label": ZERO_SHOT, "alpha": None, "seed": None}
             for m in models if zero_shot]
    for seed in seeds:
        for m in models:
            for s in strategies:
                for a in (sorted({float(alpha), *map(float, alphas)}) if s == "hybrid" else [None]):
                    specs.append({"model": m, "strategy": s, "label": strategy_label(s, a),
                                  "alpha": a, "seed": int(seed)})
            specs += [{"model": m, "strategy": RECIPE, "label": r.name, "alpha": None,
                       "seed": int(seed), "recipe": r.to_json()} for r in recipes]
    return specs


def strategy_labels(strategies: list[str], alpha: float, alphas: list[float], zero_shot: bool) -> list[str]:
    """The row labels `run_specs` gives the strategies (and zero-shot): what a merge recipe may name."""
    return [s["label"] for s in run_specs(["-"], strategies, alpha, alphas, [0], zero_shot)]


def train_overrides(spec: dict, overrides: dict, teacher: str | None = None) -> dict:
    """The training overrides of one run: the flow's `overrides` with the run's model, seed and
    either its strategy and (hybrid only; others keep the config's) alpha, or its training
    recipe's overrides (and `teacher`, the model dir of its teacher row). The trained config is
    what the task is keyed on, so an equal pipeline config is the same cache entry."""
    if spec["strategy"] == RECIPE:
        o = {**overrides, **spec["recipe"]["overrides"], "model.model": spec["model"],
             "run.seed": spec["seed"], "optim.distill_teacher": teacher}
    else:
        o = {**overrides, "model.model": spec["model"], "data.strategy": spec["strategy"],
             "run.seed": spec["seed"], "data.alpha": spec["alpha"]}
    return {k: v for k, v in o.items() if v is not None}


def is_merge(spec: dict) -> bool:
    return spec["strategy"] == RECIPE and spec["recipe"]["kind"] == "merge"


def check_recipes(profile: str, specs: list[dict], overrides: dict) -> None:
    """Resolve every training recipe's config before anything runs: a bad override is a
    one-line error naming the recipe."""
    for s in specs:
        if s["strategy"] == RECIPE and not is_merge(s):
            try:
                resolve(profile, train_overrides(s, overrides))
            except HybridError as exc:
                raise HybridError(f"recipes: {s['label']!r}: {exc}") from None


def has_teacher(spec: dict) -> bool:
    return spec["strategy"] == RECIPE and bool(spec["recipe"].get("teacher"))


def merge_input(done: list[dict], spec: dict, label: str) -> str:
    """The model dir of row `label` (merged, or the teacher) of `spec`'s model and seed among
    the rows `done` (the zero-shot row: the model's, whatever the seed); uncentered rows only."""
    for r in done:
        if r["model"] == spec["model"] and r["label"] == label and not r.get("centering") \
                and (label == ZERO_SHOT or r["seed"] == spec["seed"]):
            return r["model_dir"]
    raise HybridError(f"recipes: {spec['label']!r} uses {label!r}, which has no row for "
                      f"model {spec['model']!r} seed {spec['seed']}")


def _machine() -> str:
    info = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in
             (info.read_text().splitlines() if info.exists() else []) if line.startswith("model name")]
    cpu = names[0] if names else platform.processor()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} CPUs ({cpu}), {mem:.0f} GiB RAM, {platform.system()} {platform.machine()}"


@flow(name="hybrid-compare", log_prints=True)
def compare(
    profile: str = "quick",
    overrides: dict[str, Any] | None = None,
    models: list[str] | None = None,
    strategies: list[str] | None = None,
    alphas: list[float] | None = None,
    seeds: list[int] | None = None,
    parallel: int = 1,
    zero_shot: bool = True,
    sources: list[str] | None = None,
    benchmarks: dict[str, str] | None = None,
    eval_splits: dict[str, str] | None = None,
    languages: list[str] | None = None,
    out_of_domain: list[str] | None = None,
    centering: bool = True,
    centering_per_language: int = 512,
    recipes: list[str | dict] | None = None,
    merge_weights: list[float] | None = None,
    tolerance: float = TOLERANCE,
    results_dir: str = "runs/pipeline",
    experiment: str = "hybrid-compare",
) -> dict:
    """Compare batch strategies; returns the report paths, the verdict and the MLflow runs.

    profile/overrides/sources: as in `hybrid-pipeline` (every training gets the same
    settings; the sweep below sets model, strategy, alpha and seed per run). models: a
    model-scale sweep (default: the config's `model.model`). strategies: default
    x-x-mono, x-y, hybrid (any of hybrid.sampling.STRATEGIES, e.g. multitask); hybrid runs
    with the config's `data.alpha` (the verdict's hybrid); alphas: more hybrid alphas (a grid). seeds: default [0]; several seeds give
    mean ± sd. zero_shot: also evaluate each untrained model. benchmarks: default XQuAD-R and
    MLQA-R where the data is available locally; eval_splits: default XQuAD-R held-out.
    out_of_domain: more benchmarks every row is evaluated on (entries as in the pipeline's
    `benchmarks`, e.g. "tatoeba?langs=de,zh"; default Tatoeba where its offline copy exists).
    centering: also evaluate every model with per-language centering (`hybrid.centering`;
    rows "<label> + centering"), the means estimated on `centering_per_language` texts per
    language of the training pairs table (disjoint from every test split).
    recipes: rows next to the strategies (`hybrid.recipes`: names in RECIPES, e.g.
    "multi-positive", "merge-mono-cross", or custom dicts); each is trained or merged per seed
    and judged against the best single strategy. merge_weights: the weights a merge recipe
    tries on the validation ids (default 0, 0.2, ..., 1).
    tolerance: the verdict's "close to the best baseline" margin in mAP (0.01 = 1 point).
    parallel: trainings per wave.
    """
    log = get_run_logger()
    t0 = time.time()
    results = str(Path(results_dir).resolve())
    ensure_ray()
    overrides, base = training_overrides(profile, overrides)
    alpha, workers = base.data.alpha, base.run.workers
    models = list(models or [base.model.model])
    strategies = list(strategies or DEFAULT_STRATEGIES)
    seeds = [int(s) for s in (seeds if seeds is not None else [0])]
    sources = sources or default_sources()
    benchmarks = benchmarks or {n: s for n, s in default_benchmarks().items()
                                if n == "xquad-r" or s != "upstream"}
    eval_splits = eval_splits_for(eval_splits)
    if out_of_domain is None:
        out_of_domain = ["tatoeba"] if (data_dir() / "tatoeba").is_dir() else []
    extras = benchmark_plan(list(out_of_domain)).extras

    prepared = prepare_lareqa(benchmarks, results)
    pairs = build_pairs_table(sources, results)
    names = list(benchmarks)

    chosen = recipes_from(recipes, strategy_labels(strategies, alpha, alphas or [], zero_shot))
    specs = run_specs(models, strategies, alpha, alphas or [], seeds, zero_shot, chosen)
    check_recipes(profile, specs, overrides)
    weights = [float(w) for w in (merge_weights if merge_weights is not None else DEFAULT_MERGE_WEIGHTS)]
    config = {"flow": "hybrid-compare", "profile": profile, "overrides": overrides,
              "models": models, "strategies": strategies, "alpha": alpha, "alphas": alphas or [],
              "seeds": seeds, "zero_shot": zero_shot, "recipes": [r.to_json() for r in chosen],
              "merge_weights": weights if any(r.merge for r in chosen) else None,
              "sources": sources, "benchmarks": benchmarks, "eval_splits": eval_splits,
              "languages": languages, "out_of_domain": out_of_domain, "centering": centering,
              "centering_per_language": centering_per_language, "tolerance": tolerance, "results": results,
              "run_name": f"compare {profile} {'+'.join(Path(m).name for m in models)}"}
    parent = start_parent_run(experiment, config)

    def evaluate(model_dirs: list[str]) -> list[dict]:
        """{benchmark: eval dir} per model (`evaluate_models`: one fan-out over all of them)."""
        return [{e["benchmark"]: e["out"] for e in evals} for evals in evaluate_models(
            model_dirs, prepared, eval_splits, languages, results, max(1, workers), extras)]

    def with_centering(batch: list[dict]) -> list[dict]:
        """`batch` (evaluated) and, with `centering`, each model followed by its centered self,
        evaluated after the uncentered models: their raw embeddings are then in the cache, so
        the centered rows cost the estimate, not a second encoding."""
        if not centering or not batch:
            return batch
        dirs = [f.result() for f in center_model_task.map(
            [r["model_dir"] for r in batch], unmapped(pairs), unmapped(results),
            unmapped(centering_per_language))]
        centered = [{**r, "label": r["label"] + CENTERED, "centering": True, "model_dir": d}
                    for r, d in zip(batch, dirs, strict=True)]
        for r, ev in zip(centered, evaluate(dirs), strict=True):
            r["evals"] = ev
        return [x for pair in zip(batch, centered, strict=True) for x in pair]

    zero = [s for s in specs if s["strategy"] == ZERO_SHOT]
    pending = [{**s, "model_dir": resolve_model_task(s["model"])} for s in zero]
    trained_specs = [s for s in specs if s["strategy"] != ZERO_SHOT]
    order = {(s["model"], s["label"], s["seed"]): i for i, s in enumerate(specs)}
    rows, children = [], []
    for w in range(0, max(1, len(trained_specs)), max(1, parallel)):
        wave = trained_specs[w:w + max(1, parallel)]
        # trainings with a teacher row after the others (their teacher may be in this wave)
        for later in (False, True):
            to_train = [s for s in wave if not is_merge(s) and has_teacher(s) == later]
            teachers = [merge_input(rows + pending, s, s["recipe"]["teacher"]) if has_teacher(s) else None
                        for s in to_train]
            trained = [f.result() for f in train_model.map(
                unmapped(profile), [train_overrides(s, overrides, t) for s, t in zip(to_train, teachers, strict=True)],
                unmapped(pairs), unmapped(results))]
            for s, t in zip(to_train, trained, strict=True):
                log.info("trained %s seed %s: %s %s", s["label"], s["seed"], t["out"], t["summary"])
                pending.append({**s, "model_dir": t["model_dir"], "train_out": t["out"],
                                "train_summary": t["summary"], "train_config": t["config"]})
        for s in (s for s in wave if is_merge(s)):
            a, b, *rest = (merge_input(rows + pending, s, label) for label in s["recipe"]["merge"])
            m = merge_models_task(a, b, pairs, results, weights, base.data.val_ids, *rest)
            log.info("merged %s seed %s: weight %s of %s", s["label"], s["seed"], m["weight"], m["model_dir"])
            pending.append({**s, "model_dir": m["model_dir"], "merge": m})
        pending.sort(key=lambda r: order[(r["model"], r["label"], r["seed"])])  # the plan's order
        # evaluate this wave (and the zero-shot models with the first): one fan-out over
        # models x benchmarks, so results land wave by wave; then one child run per model
        for r, ev in zip(pending, evaluate([r["model_dir"] for r in pending]), strict=True):
            r["evals"] = ev
        pending = with_centering(pending)
        children.append(log_child_run.map(unmapped(parent), pending))
        rows += pending
        pending = []
    child_ids = [c.result() for batch in children for c in batch]

    trained_rows = [r for r in rows if r.get("train_summary") and not r.get("centering")]  # one per training
    meta = {
        "flow": "hybrid-compare", "profile": profile,
        "steps": sorted({r["train_config"]["run"]["steps"] for r in trained_rows}) or None,
        "batch size": sorted({r["train_config"]["data"]["batch_size"] for r in trained_rows}) or None,
        "models": ", ".join(models), "strategies": ", ".join(strategies),
        **({"recipes": "; ".join(f"{r.name} ({r.help})" if r.help else r.name for r in chosen)}
           if chosen else {}),
        "hybrid alphas": ", ".join(f"{a:g}" for a in sorted({alpha, *(alphas or [])})),
        "seeds": ", ".join(map(str, seeds)), "training data": ", ".join(sources),
        "benchmarks": ", ".join(f"{n} ({eval_splits.get(n, 'all')})" for n in names),
        "languages": ", ".join(languages) if languages else "all of each benchmark",
        "training wall time (sum of train_summary wall_time_s)":
            f"{sum(r['train_summary'].get('wall_time_s', 0) for r in trained_rows) / 60:.1f} min",
        "flow wall time (this run; cached steps cost nothing)": f"{(time.time() - t0) / 60:.1f} min",
        "machine": _machine(), "MLflow parent run": parent["run_id"],
    }
    out = Path(results) / "compare" / dict_hash(config)[:16]
    report = compare_report_task(rows, str(out), meta, tolerance, alpha)
    url = finish_parent_run(parent, report)
    result = {"report": report["report"], "json": report["json"], "out": str(out),
              "parent_run_id": parent["run_id"], "child_run_ids": child_ids, "run_url": url}
    write_json(Path(results) / "compare" / "latest.json", result)
    log.info("comparison report: %s", report["report"])
    log.info("MLflow parent run: %s", url)
    return result


if __name__ == "__main__":
    compare()
