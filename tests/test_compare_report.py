"""The comparison report from metrics.json files (no servers): tables, seed spread, charts and
the computed verdict; and the compare flow's training overrides keyed like the pipeline's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hybrid.evaluation.compare_report import aggregate, verdict, write_compare_report

LANGS = ["de", "en"]


def _metrics(tmp: Path, name: str, mono: float, cross: float, multi: float, bias: float) -> str:
    kinds = {"mono": mono, "cross": cross, "multi": multi}
    summary = {k: {"map": v, "r@1": v / 2, "r@10": min(1.0, v * 1.5)} for k, v in kinds.items()}
    summary["language_bias"] = bias
    settings = {}
    for x in LANGS:
        for y in [*LANGS, "multi"]:
            kind = "multi" if y == "multi" else ("mono" if x == y else "cross")
            settings[f"{x}-{y}"] = {"map": kinds[kind]}
    out = tmp / name
    out.mkdir(parents=True)
    (out / "metrics.json").write_text(json.dumps({"summary": summary, "settings": settings,
                                                  "languages": LANGS}))
    return str(out)


def _run(tmp, label, strategy, seed, vals, alpha=None, model="m"):
    evals = {b: _metrics(tmp, f"{model}-{label}-{seed}-{b}", *[v + d for v in vals[:3]], vals[3])
             for b, d in (("xquad-r", 0.0), ("mlqa-r", -0.1))}
    return {"model": model, "label": label, "strategy": strategy, "alpha": alpha, "seed": seed,
            "evals": evals}


def test_report_tables_spread_charts_and_verdict(tmp_path):
    runs = [_run(tmp_path, "zero-shot", "zero-shot", None, (0.50, 0.30, 0.20, 900.0))]
    for seed, d in ((0, 0.0), (1, 0.02)):
        runs += [_run(tmp_path, "x-x-mono", "x-x-mono", seed, (0.80 + d, 0.60, 0.30, 800.0 + 100 * d)),
                 _run(tmp_path, "x-y", "x-y", seed, (0.70, 0.70 + d, 0.40, 500.0)),
                 _run(tmp_path, "hybrid (alpha=0.5)", "hybrid", seed, (0.805, 0.695 + d, 0.40, 600.0),
                      alpha=0.5)]
    paths = write_compare_report(runs, tmp_path / "report", meta={"profile": "test"})
    md = Path(paths["report"]).read_text()
    for section in ("## Verdict", "## Table 1: mAP x 100", "## Table 2: language bias",
                    "## R@1 x 100", "## R@10 x 100", "## Charts", "## mAP heatmaps"):
        assert section in md, section
    table1 = md.split("## Table 1")[1].split("## Table 2")[0]
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in table1.splitlines() if line.startswith("| ") and "---" not in line}
    assert list(rows) == ["Model", "zero-shot", "x-x-mono", "x-y", "hybrid (alpha=0.5)"]
    assert rows["x-x-mono"][0] == "81.0 ± 1.4"  # mean and sample sd of 80 and 82
    assert rows["zero-shot"][:3] == ["50.0", "30.0", "20.0"] and rows["x-y"][3] == "60.0 ± 0.0"
    for p in (*paths["bars"].values(), *paths["heatmaps"].values()):
        assert Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(paths["heatmaps"]) == 4 * 2 and len(paths["bars"]) == 3

    v = json.loads(Path(paths["json"]).read_text())["verdict"]
    assert v["claim_close"] is True and v["claim_bias"] is True and v["spread_measured"] is True
    mono = next(c for c in v["checks"] if c["benchmark"] == "xquad-r" and c["kind"] == "mono")
    assert mono["best_baseline"] == "x-x-mono" and mono["gap"] == pytest.approx(0.805 - 0.81)
    assert mono["spread"] == pytest.approx(0.02 ** 0.5 * 0.1, rel=1e-6)  # sd of (0.80, 0.82)
    assert any("HOLDS" in s for s in v["sentences"])


def test_verdict_fails_when_hybrid_trails_or_is_more_biased(tmp_path):
    runs = [_run(tmp_path, "x-x-mono", "x-x-mono", 0, (0.80, 0.60, 0.30, 500.0)),
            _run(tmp_path, "x-y", "x-y", 0, (0.70, 0.70, 0.40, 400.0)),
            _run(tmp_path, "hybrid (alpha=0.5)", "hybrid", 0, (0.78, 0.695, 0.40, 650.0), alpha=0.5),
            _run(tmp_path, "hybrid (alpha=0.9)", "hybrid", 0, (0.90, 0.90, 0.90, 1.0), alpha=0.9)]
    v = verdict(aggregate(runs), tolerance=0.01, hybrid_alpha=0.5)  # alpha 0.9 is not judged
    failed = {(c["benchmark"], c["kind"]) for c in v["checks"] if not c["holds"]}
    assert failed == {("xquad-r", "mono"), ("mlqa-r", "mono")}  # 2 points short; cross 0.5 point
    assert v["claim_close"] is False and v["claim_bias"] is False
    assert v["spread_measured"] is False and any("not measured" in s for s in v["sentences"])
    assert verdict(aggregate(runs), tolerance=0.03)["claim_close"] is True
    assert verdict(aggregate(runs[:1]))["claim_close"] is None  # nothing to compare


def test_compare_trains_with_the_pipelines_cache_key(tmp_path):
    """The same settings through hybrid-pipeline and hybrid-compare are one training key."""
    from flows.compare import run_specs, train_overrides
    from tasks.hashing import dict_hash
    from tasks.train import _train_key

    pairs = tmp_path / "pairs"
    pairs.mkdir()
    (pairs / "pairs.parquet").write_bytes(b"table")
    order = run_specs(["me5-small"], ["x-x-mono", "x-y", "hybrid"], 0.5, [0.25], [0, 1], True)
    # zero-shot first, then seed-major: all of seed 0 (a complete comparison) before seed 1
    assert [(s["label"], s["seed"]) for s in order] == [("zero-shot", None)] + [
        (label, seed) for seed in (0, 1)
        for label in ("x-x-mono", "x-y", "hybrid (alpha=0.25)", "hybrid (alpha=0.5)")]
    specs = {s["label"]: s for s in order}
    assert sorted(specs) == ["hybrid (alpha=0.25)", "hybrid (alpha=0.5)", "x-x-mono", "x-y",
                             "zero-shot"]

    def key(overrides):
        return dict_hash(_train_key({"profile": "quick", "overrides": overrides,
                                     "pairs_dir": str(pairs), "results_dir": str(tmp_path)}))

    base = {"run.cpus_per_worker": 2}  # what `training_overrides` adds on a 2-CPU cluster
    for strategy in ("hybrid", "x-y"):  # what flows/pipeline.py passes for -p overrides=...
        pipeline = {"data.strategy": strategy, **base}
        spec = {"model": "me5-small", "strategy": strategy, "seed": 0,
                "alpha": 0.5 if strategy == "hybrid" else None}
        assert key(train_overrides(spec, base)) == key(pipeline)
        assert key(train_overrides({**spec, "seed": 1}, base)) != key(pipeline)


def _bitext(tmp: Path, name: str, acc: float) -> str:
    out = tmp / name
    out.mkdir(parents=True)
    (out / "metrics.json").write_text(json.dumps({"summary": {"xx-en": {"accuracy@1": acc, "mrr@10": acc + 0.05}}}))
    return str(out)


def test_centered_rows_and_out_of_domain_sets(tmp_path):
    """Centered rows stay out of the paper's verdict, get their effect computed against the
    same label without centering, and out-of-domain bitext figures get a table of their own."""
    runs = []
    for label, strategy, vals, acc in (("zero-shot", "zero-shot", (0.80, 0.60, 0.30, 700.0), 0.70),
                                       ("x-x-mono", "x-x-mono", (0.82, 0.70, 0.55, 240.0), 0.75),
                                       ("x-y", "x-y", (0.80, 0.72, 0.60, 190.0), 0.80),
                                       ("hybrid (alpha=0.5)", "hybrid", (0.81, 0.72, 0.59, 200.0), 0.79)):
        r = _run(tmp_path, label, strategy, 0 if strategy != "zero-shot" else None, vals,
                 alpha=0.5 if strategy == "hybrid" else None)
        r["evals"]["tatoeba"] = _bitext(tmp_path, f"{label}-tatoeba", acc)
        c = _run(tmp_path, label + " + centering", strategy, r["seed"],
                 (vals[0] - 0.01, vals[1] + 0.03, vals[2] + 0.20, vals[3] / 2), alpha=r["alpha"])
        c["evals"]["tatoeba"] = _bitext(tmp_path, f"{label}-c-tatoeba", acc + 0.02)
        runs += [r, {**c, "centering": True}]
    groups = aggregate(runs)
    v = verdict(groups)
    # the paper's claims read the uncentered groups only (a centered hybrid is better on Mul)
    assert {c["hybrid"] for c in v["checks"] if c["kind"] == "multi"} == {0.59, 0.59 - 0.1}
    eff = {(e["benchmark"], e["label"]): e for e in v["centering"]}
    d = eff[("xquad-r", "x-y + centering")]["delta"]
    assert d["multi.map"] == pytest.approx(0.20) and d["mono.map"] == pytest.approx(-0.01)
    assert d["language_bias"] == pytest.approx(-95.0)
    assert eff[("tatoeba", "zero-shot + centering")]["delta"]["xx-en.accuracy@1"] == pytest.approx(0.02)
    # training over the centered zero-shot model: the best trained group per figure
    t = eff[("xquad-r", "training over centering")]["best"]
    assert t["multi.map"]["label"] == "x-y + centering"
    assert t["multi.map"]["delta"] == pytest.approx(0.80 - 0.50)
    assert t["language_bias"]["label"] == "x-y + centering" and t["language_bias"]["delta"] == pytest.approx(95 - 350)
    assert eff[("tatoeba", "training over centering")]["best"]["xx-en.accuracy@1"]["delta"] == pytest.approx(0.10)
    paths = write_compare_report(runs, tmp_path / "report")
    md = Path(paths["report"]).read_text()
    table = md.split("## Out of domain: tatoeba")[1].split("\n## ")[0]
    rows = {ln.split("|")[1].strip(): [c.strip() for c in ln.split("|")[2:-1]]
            for ln in table.splitlines() if ln.startswith("| ") and "---" not in ln}
    assert rows["Model"] == ["xx-en.accuracy@1", "xx-en.mrr@10"]
    assert rows["x-y + centering"] == ["82.0", "87.0"]
    assert "Table 1" in md and "tatoeba Mo" not in md  # bitext is not a LAReQA column
    assert len(paths["heatmaps"]) == 8 * 2


def test_cli_joins_a_flow_report_with_cli_rows(tmp_path, capsys):
    """`hybrid compare-report`: a flow's compare.json plus a hand-written rows file (relative
    eval dirs, no model or strategy) make one report whose groups hold both seeds; a run given
    twice with the same evaluations is kept once, and bad rows fail in one line, writing nothing."""
    from hybrid.cli import main

    flow = [_run(tmp_path, "x-x-mono", "x-x-mono", 0, (0.80, 0.60, 0.30, 800.0), model="me5"),
            _run(tmp_path, "x-y", "x-y", 0, (0.70, 0.70, 0.40, 500.0), model="me5"),
            _run(tmp_path, "merge-a-b", "recipe", 0, (0.81, 0.70, 0.45, 450.0), model="me5")]
    flow_dir = tmp_path / "flow"
    first = write_compare_report(flow, flow_dir)
    cli = tmp_path / "cli"
    cli.mkdir()
    extra = [_run(cli, "x-x-mono", None, 1, (0.82, 0.60, 0.30, 810.0)),
             _run(cli, "merge-a-b", None, 1, (0.83, 0.70, 0.47, 440.0))]
    rows = [{"label": r["label"], "seed": r["seed"],
             "evals": {b: str(Path(d).relative_to(cli)) for b, d in r["evals"].items()}} for r in extra]
    rows.append({**flow[1], "strategy": None})  # x-y seed 0 again: the same evaluations
    (cli / "rows.json").write_text(json.dumps(rows))

    out = tmp_path / "joined"
    assert main(["compare-report", first["json"], str(cli / "rows.json"), "--out", str(out),
                 "--meta", "machine=test box"]) == 0
    assert "5 runs in 3 rows" in capsys.readouterr().out
    doc = json.loads((out / "compare.json").read_text())
    groups = {g["label"]: g for g in doc["groups"]}
    assert list(groups) == ["x-x-mono", "x-y", "merge-a-b"]
    assert groups["x-x-mono"]["n"] == 2 and groups["merge-a-b"]["n"] == 2 and groups["x-y"]["n"] == 1
    assert {r["model"] for r in doc["runs"]} == {"me5"}  # the one model the others name
    assert doc["runs"][4]["strategy"] == "recipe" and doc["runs"][3]["strategy"] == "x-x-mono"
    assert doc["meta"]["machine"] == "test box"
    check = next(c for c in doc["verdict"]["recipes"] if c["benchmark"] == "xquad-r")
    mono = next(m for m in check["margins"] if m["figure"] == "mono.map")
    assert mono["recipe"] == pytest.approx(0.82) and mono["reference"] == pytest.approx(0.81)
    assert mono["spread"] == pytest.approx(0.02 ** 0.5 * 0.1, rel=1e-6)  # both rows have 2 seeds
    assert "- machine: test box" in (out / "report.md").read_text()

    bad = tmp_path / "bad.json"
    cases = [([], "not a JSON file"),
             ([{"label": "x", "seed": 0, "evals": {"xquad-r": "nowhere"}}], "metrics.json not found"),
             ([{"label": "x", "evals": {}}], "evals must map"),
             ([{"label": "x", "seed": "0", "evals": rows[0]["evals"]}], "seed must be an integer"),
             ([{"label": "x", "seeds": 0, "evals": rows[0]["evals"]}], "unknown fields seeds"),
             ([{**flow[1], "evals": extra[0]["evals"]}], "given twice with different evaluations")]
    for content, message in cases:
        bad.write_text(json.dumps(content) if content else "{not json")
        assert main(["compare-report", first["json"], str(bad), "--out", str(tmp_path / "no")]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "no").exists()
    assert main(["compare-report", str(tmp_path / "missing.json"), "--out", str(tmp_path / "no")]) == 2
    assert "no such rows file" in capsys.readouterr().err
    assert main(["compare-report", first["json"], "--out", first["json"]]) == 2
    assert "is a file" in capsys.readouterr().err
