"""Extra benchmarks in the flows (issue #10): the `benchmarks` parameter checked before anything
runs, their MLflow metric names, and `hybrid-pipeline/tiny` and `hybrid-evaluate` with
Tatoeba (and a local MTEB task) through the session's stack (tests/conftest.py), into their
own results dirs and MLflow experiments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.common import BENCHMARK_CHOICES, benchmark_plan, default_benchmarks
from hybrid.errors import HybridError
from hybrid.evaluation.metric_names import flat_metrics
from tasks.hashing import tree_hash

MTEB_TASK = Path(__file__).parent / "fixtures" / "mteb" / "local_tasks.py"


@pytest.fixture(scope="module")
def small_tatoeba(tmp_path_factory, data_dir) -> Path:
    """The first 60 lines of the de-en and es-en Tatoeba pairs."""
    root = tmp_path_factory.mktemp("tatoeba")
    for code in ("deu", "spa"):
        for side in (code, "eng"):
            name = f"tatoeba.{code}-eng.{side}"
            lines = (data_dir / "tatoeba" / name).read_text(encoding="utf-8").splitlines()[:60]
            (root / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


# ------------------------------------------------------------------ the parameter
def test_plan_keeps_lareqa_and_adds_each_extra_with_its_options(small_tatoeba):
    assert BENCHMARK_CHOICES == ("xquad-r", "mlqa-r", "tatoeba", "bitext", "miracl", "trec", "mteb")
    plan = benchmark_plan(None)
    assert plan.lareqa == default_benchmarks() and plan.extras == []
    plan = benchmark_plan([f"tatoeba:{small_tatoeba}?langs=de,es&directions=both",
                           "miracl:tests/fixtures/miracl?langs=sw", f"mteb:{MTEB_TASK}:TatoebaDeEnSample",
                           "mlqa-r:tests/fixtures"])
    assert list(plan.lareqa) == ["xquad-r", "mlqa-r"] and plan.lareqa["mlqa-r"] == "tests/fixtures"
    assert plan.extras == [
        {"benchmark": "tatoeba", "source": str(small_tatoeba), "languages": ["de", "es"],
         "directions": "both"},
        {"benchmark": "miracl", "source": "tests/fixtures/miracl", "languages": ["sw"],
         "directions": "xx-en"},
        {"benchmark": "mteb", "tasks": [f"{MTEB_TASK}:TatoebaDeEnSample"]}]
    # the mapping form is the same entries; MIRACL defaults to the Hub
    assert benchmark_plan({"miracl": None}).extras[0]["source"] == "hub"


@pytest.mark.parametrize("value, message", [
    (["tatoba"], "unknown benchmark 'tatoba' (choose xquad-r, mlqa-r, tatoeba, bitext, miracl, trec, mteb)"),
    (["../../etc"], "unknown benchmark '../../etc'"),
    (["trec"], "trec needs a source"),
    (["bitext:/no/such/dir"], "/no/such/dir: no such file or directory"),
    (["tatoeba?langs=en"], "en is the pivot"),
    (["tatoeba?langs=xx"], "unknown language code 'xx'"),
    (["tatoeba?directions=up"], "directions must be"),
    (["tatoeba?depth=3"], "unknown option(s) depth for tatoeba"),
    (["xquad-r?langs=de"], "unknown option(s) langs for xquad-r"),
    (["tatoeba", "tatoeba"], "tatoeba is given twice"),
    ("tatoeba", "expected a list"),
])
def test_bad_entries_are_one_line_errors(value, message):
    with pytest.raises(HybridError) as err:
        benchmark_plan(value)
    assert str(err.value).startswith("benchmarks: ") and message in str(err.value)
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------ MLflow names
def test_flat_metrics_names_every_group_and_the_headline_per_setting():
    lareqa = {"summary": {"mono": {"map": 0.5, "r@1": None}, "cross": {"map": 0.4},
                          "multi": {"map": 0.3}, "language_bias": 12.0},
              "settings": {"de-en": {"map": 0.45, "r@1": 0.2}, "de-multi": {"map": 0.3}}}
    assert flat_metrics("xquad-r", lareqa) == {
        "xquad_r.mAP.mono": 0.5, "xquad_r.mAP.cross": 0.4, "xquad_r.mAP.multi": 0.3,
        "xquad_r.language_bias": 12.0, "xquad_r.mAP.de-en": 0.45, "xquad_r.mAP.de-multi": 0.3}
    tatoeba = {"summary": {"xx-en": {"accuracy@1": 0.9, "mrr@10": 0.95},
                           "en-xx": {"accuracy@1": 0.8, "mrr@10": 0.85}},
               "settings": {"de-en": {"accuracy@1": 0.9, "mrr@10": 0.95},
                            "en-de": {"accuracy@1": 0.8, "mrr@10": 0.85}}}
    assert flat_metrics("tatoeba", tatoeba) == {
        "tatoeba.Acc1.xx-en": 0.9, "tatoeba.MRR10.xx-en": 0.95, "tatoeba.Acc1.en-xx": 0.8,
        "tatoeba.MRR10.en-xx": 0.85, "tatoeba.Acc1.de-en": 0.9, "tatoeba.Acc1.en-de": 0.8}
    ir = {"summary": {"all": {"ndcg@10": 0.7, "r@100": 1.0}},
          "settings": {"my+coll": {"ndcg@10": 0.7, "r@100": 1.0}}}
    assert flat_metrics("trec", ir) == {"trec.nDCG10.all": 0.7, "trec.R100.all": 1.0,
                                        "trec.nDCG10.my_coll": 0.7}
    mteb = {"summary": {"all": {"main_score": 0.6}},
            "settings": {"TaskA": {"main_score": 0.6, "de-en/test": 0.6}, "TaskB": {"main_score": None}}}
    assert flat_metrics("mteb", mteb) == {"mteb.main.all": 0.6, "mteb.main.TaskA": 0.6}


# ------------------------------------------------------------------ flows on the stack
def _run_metrics(experiment: str):
    import mlflow

    exp = mlflow.get_experiment_by_name(experiment)
    (run,) = mlflow.MlflowClient().search_runs([exp.experiment_id])
    return run


def _artifacts(run_id: str, path: str) -> set[str]:
    import mlflow

    return {Path(f.path).name for f in mlflow.MlflowClient().list_artifacts(run_id, path)}


@pytest.mark.slow
def test_pipeline_logs_the_tatoeba_metrics_with_its_run(pipeline_run, deployed, small_tatoeba):
    """`hybrid-pipeline/tiny` with benchmarks=["tatoeba:...?langs=de,es"] into its own results
    dir and experiment: the same trained weights as the session's run (linked to its
    registered version, none added), plus Tatoeba's metrics and report in the MLflow run."""
    from mlflow import MlflowClient

    versions = len(MlflowClient().search_model_versions("name='hybrid-retriever'"))
    results = deployed.results("benchmarks-pipeline")
    out = deployed.run("hybrid-pipeline/tiny", overrides={"model.model": deployed.model}, results_dir=results,
                       experiment="hybrid-pipeline-benchmarks",
                       benchmarks=[f"tatoeba:{small_tatoeba}?langs=de,es"])
    assert out["tasks"]["benchmark-tatoeba"] == "Completed", out["tasks"]
    latest = json.loads((Path(results) / "latest.json").read_text())
    assert set(latest["reports"]) == {"xquad-r", "mlqa-r", "tatoeba"}
    assert set(latest["heatmaps"]) == {"xquad-r", "mlqa-r"}
    m = json.loads((Path(latest["reports"]["tatoeba"]).parent / "metrics.json").read_text())
    assert sorted(m["settings"]) == ["de-en", "es-en"]
    run = _run_metrics("hybrid-pipeline-benchmarks")
    got = {k: v for k, v in run.data.metrics.items() if k.startswith("tatoeba.")}
    assert got == pytest.approx(flat_metrics("tatoeba", m), abs=1e-9)
    assert set(got) == {"tatoeba.Acc1.xx-en", "tatoeba.MRR10.xx-en", "tatoeba.Acc1.de-en",
                        "tatoeba.Acc1.es-en"}
    assert "xquad_r.mAP.multi" in run.data.metrics
    assert json.loads(run.data.params["extra_benchmarks"])[0]["languages"] == ["de", "es"]
    assert _artifacts(run.info.run_id, "eval/tatoeba") == {"report.md", "metrics.json"}
    # the weights are the session run's: linked to their registered version, none added
    mv = MlflowClient().get_model_version("hybrid-retriever", run.data.tags["hybrid.model_version"])
    assert mv.tags["hybrid.model_hash"] == tree_hash(Path(latest["train_dir"]) / "model")
    assert len(MlflowClient().search_model_versions("name='hybrid-retriever'")) == versions


@pytest.mark.slow
def test_evaluate_flow_logs_tatoeba_and_mteb_metrics(deployed, small_tatoeba):
    """`hybrid-evaluate` on the tiny model with Tatoeba and a local MTEB task (LAReQA on the
    comparison's zero-shot slice, so the session's embedding cache serves one of the two)."""
    results = deployed.results("benchmarks-evaluate")
    out = deployed.run("hybrid-evaluate/champion", model=deployed.model, results_dir=results,
                       languages=["en", "de", "es"], experiment="hybrid-evaluate-benchmarks",
                       benchmarks=[f"tatoeba:{small_tatoeba}?langs=de",
                                   f"mteb:{MTEB_TASK}:TatoebaDeEnSample"])
    assert out["tasks"]["benchmark-tatoeba"] == out["tasks"]["benchmark-mteb"] == "Completed"
    run = _run_metrics("hybrid-evaluate-benchmarks")
    assert json.loads(run.data.params["benchmarks"]) == ["xquad-r", "mlqa-r", "tatoeba", "mteb"]
    outs = {p.parent.parent.name: p for p in Path(results, "eval").glob("*/*/metrics.json")}
    for bench in ("tatoeba", "mteb", "xquad-r"):
        want = flat_metrics(bench, json.loads(outs[bench].read_text()))
        assert want and {k: run.data.metrics[k] for k in want} == pytest.approx(want, abs=1e-9)
    assert {"tatoeba.Acc1.xx-en", "tatoeba.Acc1.de-en", "mteb.main.all",
            "mteb.main.TatoebaDeEnSample"} <= set(run.data.metrics)
    assert _artifacts(run.info.run_id, "eval/mteb") == {"report.md", "metrics.json"}


@pytest.mark.slow
def test_unknown_benchmark_fails_the_flow_before_anything_is_written(deployed):
    results = Path(deployed.results("benchmarks-bad"))
    out = deployed.run("hybrid-pipeline/tiny", completed=False, overrides={"model.model": deployed.model},
                       results_dir=str(results), experiment="hybrid-pipeline-bad",
                       benchmarks=["tatoeba", "tatoba"])
    state = out["flow_run"].state
    assert state.is_failed(), state
    assert "benchmarks: unknown benchmark 'tatoba' (choose xquad-r, mlqa-r, tatoeba" in state.message
    assert "\n" not in state.message.strip()
    assert out["tasks"] == {} and not results.exists()
