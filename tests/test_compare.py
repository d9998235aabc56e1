"""The comparison end to end through real services on 127.0.0.1 (the session's stack from
tests/conftest.py: `prefect deploy --all`, a process worker), then a flow run of
'hybrid-compare/compare-tiny' with the tiny model on a three-language slice of XQuAD-R (and the
MLQA-R sample, and Tatoeba out of domain) with three recipe rows (`multi-positive`, a training;
`merge-mono-cross`, a merge of two of the trainings, its weight chosen on validation ids;
`distill-from-mono`, a training whose distillation teacher is the x-x-mono row): five
trainings, one merge, fourteen evaluations (each model and its per-language centered self), the
report, and the MLflow parent run with one child per evaluated model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
EXPERIMENT = "hybrid-compare-tiny"
RECIPES = ["multi-positive", "merge-mono-cross", "distill-from-mono"]
BASE = ["zero-shot", "x-x-mono", "x-y", "hybrid (alpha=0.5)", *RECIPES]
LABELS = [x for b in BASE for x in (b, f"{b} + centering")]  # each model, then centered
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def compared(stack_session):
    """compare-tiny run once through the session's stack; yields the flow run's facts. The
    three strategies train in one wave, one CPU each (the flow's `parallel`), so the 2-core CI
    runs two at once and evaluates the four models in one fan-out; the recipes make the second
    wave."""
    d = stack_session
    results = Path(d.results("compare"))
    out = d.run("hybrid-compare/compare-tiny", results_dir=str(results), parallel=3, timeout=900,
                overrides={"model.model": d.model, "run.workers": 1, "run.cpus_per_worker": 1})
    latest = json.loads((results / "compare" / "latest.json").read_text())
    return {"tasks": [(t.name, t.state.name) for t in out["task_runs"]], "latest": latest}


def _table(md: str, heading: str) -> dict[str, list[str]]:
    part = md.split(heading, 1)[1].split("\n## ", 1)[0]
    return {ln.split("|")[1].strip(): [c.strip() for c in ln.split("|")[2:-1]]
            for ln in part.splitlines() if ln.startswith("| ") and "---" not in ln}


def test_compare_runs_every_strategy_once_through_the_pipeline_tasks(compared):
    names = [n for n, _ in compared["tasks"]]
    # hybrid's batches mix mono and cross: else the multi-positive recipe (hybrid whose cross
    # batches hold parallel answers) trains exactly as hybrid and its evaluations are cached
    out = Path(compared["latest"]["out"]).parent.parent
    summaries = [json.loads(p.read_text()) for p in out.glob("train/*/train_summary.json")]
    assert len(summaries) == 5
    assert all(set(s["batches_by_type"]) == {"mono", "cross"} for s in summaries
               if s["strategy"] == "hybrid"), [s["batches_by_type"] for s in summaries]
    # a merge whose validation picks weight 0 or 1 is its input's weights: its encodings are
    # the input's cached ones; nothing else may be cached in a fresh session
    merge = json.loads(Path(compared["latest"]["json"]).read_text())
    merged = next(r for r in merge["runs"] if r["label"] == "merge-mono-cross")["merge"]
    states = {"Completed", "Cached"} if merged["weight"] in (0.0, 1.0) else {"Completed"}
    odd = [(n, s) for n, s in compared["tasks"] if s not in states or (
        s == "Cached" and not n.startswith(("encode-", "matrix-", "benchmark-", "center-model")))]
    assert not odd, odd
    assert sum(n.startswith("train_model") for n in names) == 5  # 3 strategies + 2 recipes
    assert sum(n.startswith("merge-models") for n in names) == 1
    assert sum(n.startswith("center-model") for n in names) == 7  # 5 trained, 1 merged, zero-shot
    for bench in ("xquad-r", "mlqa-r"):  # 14 models (7, each also centered) x 2 benchmarks
        assert names.count(f"encode-{bench}") == 14 and names.count(f"matrix-{bench}") == 14
    assert names.count("benchmark-tatoeba") == 14
    assert sum(n.startswith("log-child-") for n in names) == 14
    # distill-from-mono's teacher: the x-x-mono row's trained model (the same seed)
    trained = {p.parent: json.loads(p.read_text())["strategy"] for p in out.glob("train/*/train_summary.json")}
    mono = next(d for d, strategy in trained.items() if strategy == "x-x-mono")
    configs = [json.loads(p.read_text()) for p in out.glob("train/*/ray/*/hybrid_config.json")]
    assert len(configs) == 5
    assert [c["optim"]["distill_teacher"] for c in configs if c["optim"]["distill_teacher"]] == [
        str(mono / "model")]


def test_report_has_the_papers_tables_and_charts(compared):
    out = Path(compared["latest"]["out"])
    md = Path(compared["latest"]["report"]).read_text()
    t1 = _table(md, "## Table 1: mAP x 100")
    assert list(t1) == ["Model", *LABELS]
    assert t1["Model"] == [f"{b} {k}" for b in ("xquad-r", "mlqa-r") for k in ("Mo", "Cr", "Mul")]
    assert all(0 <= float(c) <= 100 for label in LABELS for c in t1[label])
    t2 = _table(md, "## Table 2: language bias")
    assert list(t2) == ["Model", *LABELS] and all(float(t2[x][0]) > 0 for x in LABELS)
    for r in ("## R@1 x 100", "## R@10 x 100"):
        assert list(_table(md, r)) == ["Model", *LABELS]
    doc = json.loads(Path(compared["latest"]["json"]).read_text())
    v = doc["verdict"]
    assert v["claim_close"] in (True, False) and v["claim_bias"] in (True, False)
    assert len(v["checks"]) == 6 and not v["spread_measured"]
    assert "Claim 1 (hybrid within 1.0 mAP points" in md and "not measured" in md
    # the table's figures are the evaluations' own
    hyb = next(r for r in doc["runs"] if r["strategy"] == "hybrid")
    m = json.loads((Path(hyb["evals"]["xquad-r"]) / "metrics.json").read_text())
    assert t1["hybrid (alpha=0.5)"][2] == f"{100 * m['summary']['multi']['map']:.1f}"
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert {"map-xquad-r.png", "map-mlqa-r.png", "language-bias.png"} <= set(pngs)
    assert sum(p.startswith("heatmap-") for p in pngs) == 28  # 14 rows x 2 benchmarks
    # out of domain: Tatoeba for every row; centering's effect and what training adds, computed
    t3 = _table(md, "## Out of domain: tatoeba")
    assert list(t3) == ["Model", *LABELS] and t3["Model"] == ["xx-en.accuracy@1", "xx-en.mrr@10"]
    assert all(0 <= float(c) <= 100 for label in LABELS for c in t3[label])
    effects = v["centering"]
    assert {(e["benchmark"], e["label"]) for e in effects} >= {
        (b, f"{x} + centering") for b in ("xquad-r", "mlqa-r", "tatoeba") for x in BASE}
    assert any(e["label"] == "training over centering" and e["benchmark"] == "tatoeba" for e in effects)
    cen = next(g for g in doc["groups"] if g["label"] == "x-y + centering")
    raw = next(g for g in doc["groups"] if g["label"] == "x-y")
    e = next(e for e in effects if e["label"] == "x-y + centering" and e["benchmark"] == "xquad-r")
    assert e["delta"]["multi.map"] == pytest.approx(
        cen["figures"]["xquad-r"]["multi.map"]["mean"] - raw["figures"]["xquad-r"]["multi.map"]["mean"])
    assert all((out / p).read_bytes()[:8] == PNG for p in pngs)
    # the recipes: judged against the best single strategy on each LAReQA benchmark
    checks = {(c["recipe"], c["benchmark"]): c for c in v["recipes"]}
    judged = [*RECIPES, *(f"{x} + centering" for x in BASE)]  # recipes and every centered row
    assert set(checks) == {(r, b) for r in judged for b in ("xquad-r", "mlqa-r")}
    c = checks[("multi-positive", "xquad-r")]
    singles = ("x-x-mono", "x-y", "hybrid (alpha=0.5)")
    best_mo = max(float(t1[x][0]) for x in singles)
    assert [m["figure"] for m in c["margins"]] == ["mono.map", "multi.map", "language_bias"]
    assert 100 * c["margins"][0]["margin"] == pytest.approx(float(t1["multi-positive"][0]) - best_mo, abs=0.06)
    assert c["meets"] == all(m["margin"] >= 0 for m in c["margins"]) and c["clear"] in (None, False)
    assert "recipe multi-positive vs the best single strategy" in md
    merged = next(r for r in doc["runs"] if r["label"] == "merge-mono-cross")
    assert merged["merge"]["weight"] in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    assert len(merged["merge"]["table"]) == 6
    for p in pngs:
        assert f"]({p})" in md


def test_mlflow_parent_run_with_one_child_per_strategy(compared, deployed):
    import mlflow

    client = mlflow.MlflowClient()
    exp = mlflow.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    (parent,) = parents
    assert parent.info.run_id == compared["latest"]["parent_run_id"]
    assert parent.info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == len(runs) - 1 == 14
    assert sorted(r.data.tags["hybrid.label"] for r in children) == sorted(LABELS)
    assert {r.info.run_id for r in children} == set(compared["latest"]["child_run_ids"])
    doc = json.loads(Path(compared["latest"]["json"]).read_text())
    for child in children:
        run = next(r for r in doc["runs"] if r["label"] == child.data.tags["hybrid.label"])
        for bench, key in (("xquad-r", "xquad_r"), ("mlqa-r", "mlqa_r")):
            m = json.loads((Path(run["evals"][bench]) / "metrics.json").read_text())
            assert child.data.metrics[f"{key}.mAP.multi"] == pytest.approx(
                m["summary"]["multi"]["map"], abs=1e-9)
        trained = child.data.tags["hybrid.strategy"] != "zero-shot" and \
            child.data.tags["hybrid.label"] not in ("merge-mono-cross", "merge-mono-cross + centering")
        assert ("train.steps" in child.data.metrics) == trained
    files = {Path(a.path).name for a in client.list_artifacts(parent.info.run_id, "compare")}
    assert {"report.md", "compare.json", "map-xquad-r.png", "language-bias.png"} <= files
    assert parent.data.tags["hybrid.verdict.claim_close"] in ("True", "False")


def test_a_retried_child_run_is_not_logged_twice(compared, deployed):
    """log_child_run again for a logged model (a retry after a lost response) returns the
    finished child; an unfinished child of an earlier attempt is deleted, not kept beside it."""
    import mlflow

    from tasks.compare import log_child_run
    from tasks.mlflow_runs import PARENT_TAG

    client = mlflow.MlflowClient()
    latest = compared["latest"]
    exp_id = client.get_run(latest["parent_run_id"]).info.experiment_id
    parent = {"run_id": latest["parent_run_id"], "experiment_id": exp_id, "reused": False}
    run = next(r for r in json.loads(Path(latest["json"]).read_text())["runs"] if r["strategy"] == "x-y")
    children = lambda: client.search_runs([exp_id], f"tags.`{PARENT_TAG}` = '{parent['run_id']}'")  # noqa: E731
    finished = {r.data.tags["hybrid.label"]: r.info.run_id for r in children()}
    stale = client.create_run(exp_id, tags={PARENT_TAG: parent["run_id"], "hybrid.label": run["label"],
                                            "hybrid.seed": str(run["seed"])})
    assert log_child_run.fn(parent, run) == finished[run["label"]]
    assert client.get_run(stale.info.run_id).info.lifecycle_stage == "deleted"
    assert sorted(r.info.run_id for r in children()) == sorted(finished.values())
