"""The strategy comparison report: tables, charts and a computed verdict from metrics.json files.

Input: *runs*, one dict per evaluated model:
`{"label": "hybrid (alpha=0.5)", "strategy": "hybrid", "alpha": 0.5, "seed": 0,
"model": "me5-small", "evals": {"xquad-r": EVAL_DIR, "mlqa-r": EVAL_DIR}}` where each
EVAL_DIR holds the `metrics.json` of `hybrid evaluate` (strategy "zero-shot": the untrained
model, seed None). Runs with the same (model, label) are seeds of one `Group`; a group's
`Figure` is the mean over its seeds and its spread the sample standard deviation (None for one
seed) (`hybrid.evaluation.compare_groups`).

`write_compare_report(runs, out, meta=...)` writes into `out` (each file atomically,
`compare.json` last):
- `report.md`: Table 1 (mAP x 100, Mo / Cr / Mul per benchmark and group, as in the paper),
  Table 2 (language bias), R@1 / R@10 x 100, the verdict, links to the charts; every table
  comes from one helper (`_table`: one row per group, one column per benchmark and figure);
- `map-<benchmark>.png` (grouped bars: Mo / Cr / Mul per group, error bars = seed spread),
  `language-bias.png`, `heatmap-<benchmark>-<group>.png` (mean mAP matrix of each group,
  `hybrid.evaluation.report.heatmap`);
- `compare.json`: the groups' figures (`Group.to_json`), the verdict (`verdict_json`), the
  images and the runs, machine-readable.

The verdict (`hybrid.evaluation.compare_verdict`) checks the paper's two claims for each model
and benchmark: (1) hybrid (alpha = `hybrid_alpha`) is within `tolerance` mAP of the best of the
x-x-mono and x-y baselines on each of Mo, Cr and Mul; (2) its language bias is lower than
x-x-mono's. `judge` computes it from the figures as records; the English (`verdict_sentences`)
is rendered from those records only, never written by hand; with one seed it says that the
spread is not measured.

Runs with `"centering": True` (labels ending in `CENTERED`) are the same models with
per-language centering (`hybrid.centering`): the claims ignore them; `centering_effects`
compares each with its uncentered row and the best trained row with the centered zero-shot
model. A benchmark whose metrics.json is bitext retrieval (Tatoeba: accuracy@1 and MRR@10
per direction) gets a table of its own ("Out of domain") instead of Table 1's columns.

This module re-exports the public names of both (`aggregate`, `verdict`, `ZERO_SHOT`, ...).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hybrid.evaluation.compare_groups import (
    CENTERED,
    KINDS,
    RECALLS,
    ZERO_SHOT,
    Figure,
    Group,
    aggregate,
    is_lareqa,
    lareqa_benches,
    load_metrics,
    slug,
    strategy_label,
)
from hybrid.evaluation.compare_verdict import (
    RECIPE,
    TOLERANCE,
    BenchVerdict,
    BiasCheck,
    Check,
    RecipeCheck,
    Verdict,
    centering_effects,
    judge,
    verdict,
    verdict_json,
    verdict_sentences,
)
from hybrid.evaluation.report import heatmap
from hybrid.io import atomic_path, write_json, write_text


def _table(title: str, groups: list[Group], several: bool, columns: list[tuple[str, str, str]],
           scale: float = 100.0, note: str | None = None) -> list[str]:
    """A report section: one row per group, one column per (header, benchmark, key), each cell
    `scale` x mean (± sd where measured), "-" where the group lacks the figure."""
    lines = ["", f"## {title}", "", *([note, ""] if note else []),
             "| Model | " + " | ".join(h for h, _, _ in columns) + " |",
             "| --- |" + " ---: |" * len(columns)]
    for g in groups:
        cells = [_cell(g.figure(b, k), scale) for _, b, k in columns]
        lines.append(f"| {g.name(several)} | " + " | ".join(cells) + " |")
    return lines


def _cell(f: Figure | None, scale: float) -> str:
    if f is None or f.mean is None:
        return "-"
    return f"{scale * f.mean:.1f}" + (f" ± {scale * f.std:.1f}" if f.std is not None else "")


def render(groups: list[Group], verdict_: Verdict, meta: dict | None = None,
           images: dict | None = None) -> str:
    """report.md as a string: meta, verdict, Tables 1 and 2, recalls, out-of-domain tables,
    and links to the charts of `images` ({"bars": {name: path}, "heatmaps": {name: path}})."""
    benches = lareqa_benches(groups)
    several = len({g.model for g in groups}) > 1

    def kinds(metric: str) -> list[tuple[str, str, str]]:
        return [(f"{b} {s}", b, f"{k}.{metric}") for b in benches for k, s in KINDS]

    lines = ["# Strategy comparison (arXiv 2408.10536, Tables 1 and 2)", ""]
    lines += [f"- {k}: {v}" for k, v in (meta or {}).items()]
    lines += ["", "## Verdict (computed from the figures below)", ""]
    lines += [f"- {s}" for s in verdict_sentences(verdict_)]
    seeds = ", ".join(f"{g.name(several)}: {g.n}" for g in groups)
    lines += _table("Table 1: mAP x 100", groups, several, kinds("map"), note=(
        f"Mo / Cr / Mul: macro means over the mono, cross and multilingual-pool settings. "
        f"Mean ± sample sd over seeds where a group has several (seeds per row: {seeds})."))
    lines += _table("Table 2: language bias (mean max - min rank of the parallel answers in the "
                    "pooled setting; lower is better)", groups, several,
                    [(b, b, "language_bias") for b in benches], scale=1.0)
    for r in RECALLS:
        lines += _table(f"{r.upper()} x 100", groups, several, kinds(r))
    for b in [b for b in dict.fromkeys(x for g in groups for x in g.figures) if b not in benches]:
        keys = dict.fromkeys(k for g in groups for k in g.figures.get(b, {}))
        lines += _table(f"Out of domain: {b} (x 100, macro mean over language pairs)", groups,
                        several, [(k, b, k) for k in keys])
    if images:
        lines += ["", "## Charts", ""]
        lines += [f"![{name}]({Path(p).name})" for name, p in images.get("bars", {}).items()]
        lines += ["", "## mAP heatmaps (query language x pool language, mean over seeds)", ""]
        for name, p in images.get("heatmaps", {}).items():
            lines += [f"### {name}", "", f"![{name}]({Path(p).name})", ""]
    return "\n".join(lines).rstrip() + "\n"


# ---- charts and files ------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _bars(groups: list[Group], bench: str, path: Path, several: bool) -> None:
    plt = _pyplot()
    gs = [g for g in groups if bench in g.figures]
    width = 0.8 / max(1, len(gs))
    fig, ax = plt.subplots(figsize=(2.2 + 1.2 * len(gs), 3.6))
    x = np.arange(len(KINDS))
    for i, g in enumerate(gs):
        f = [g.figure(bench, f"{k}.map") for k, _ in KINDS]
        means = [100 * (v.mean if v.mean is not None else np.nan) for v in f]
        errs = [100 * v.std if v.std is not None else 0.0 for v in f]
        ax.bar(x + (i - (len(gs) - 1) / 2) * width, means, width, yerr=errs, capsize=3,
               label=g.name(several))
    ax.set_xticks(x, [s for _, s in KINDS])
    ax.set_ylabel("mAP x 100")
    ax.set_title(f"{bench}: mAP by setting kind and strategy", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    _save(fig, path)


def _bias_bars(groups: list[Group], benches: list[str], path: Path, several: bool) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(benches), figsize=(1.5 + 3.2 * len(benches), 3.6), squeeze=False)
    for ax, b in zip(axes[0], benches, strict=True):
        gs = [g for g in groups if b in g.figures]
        f = [g.figure(b, "language_bias") for g in gs]
        ax.bar(range(len(gs)), [v.mean if v.mean is not None else np.nan for v in f],
               yerr=[v.std or 0.0 for v in f], capsize=3, color=[f"C{i}" for i in range(len(gs))])
        ax.set_xticks(range(len(gs)), [g.name(several) for g in gs], rotation=30, ha="right",
                      fontsize=7)
        ax.set_title(f"{b}: language bias (lower is better)", fontsize=9)
    _save(fig, path)


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    _pyplot().close(fig)


#: What compare.json keeps of each run (a recipe row: its recipe; a merge: the chosen weight
#: and the validation table it was chosen on).
RUN_FIELDS = ("model", "label", "strategy", "alpha", "centering", "seed", "evals", "recipe", "merge")


def write_compare_report(runs: list[dict], out: str | Path, meta: dict | None = None,
                         tolerance: float = TOLERANCE, hybrid_alpha: float = 0.5) -> dict:
    """Write report.md, the PNGs and compare.json into `out`; returns their paths:
    {"report", "json", "bars": {name: path}, "heatmaps": {name: path}}."""
    out = Path(out)
    groups = aggregate(runs)
    judged = judge(groups, tolerance, hybrid_alpha)
    benches = lareqa_benches(groups)
    several = len({g.model for g in groups}) > 1
    images = {"bars": {}, "heatmaps": {}}
    for b in benches:
        p = out / f"map-{slug(b)}.png"
        _bars(groups, b, p, several)
        images["bars"][f"{b} mAP"] = str(p)
    p = out / "language-bias.png"
    _bias_bars(groups, benches, p, several)
    images["bars"]["language bias"] = str(p)
    for g in groups:
        for b, m in g.matrices.items():
            name = f"{b} - {g.name(several)}"
            p = out / f"heatmap-{slug(b)}-{slug(g.name(several))}.png"
            heatmap(m, p, name)
            images["heatmaps"][name] = str(p)
    write_text(out / "report.md", render(groups, judged, meta, images))
    doc = {"meta": meta or {}, "verdict": verdict_json(judged), "images": images,
           "groups": [g.to_json() for g in groups],
           "runs": [{k: r.get(k) for k in RUN_FIELDS} for r in runs]}
    write_json(out / "compare.json", doc)
    return {"report": str(out / "report.md"), "json": str(out / "compare.json"), **images}


__all__ = ["CENTERED", "ZERO_SHOT", "BenchVerdict", "BiasCheck", "Check", "Figure", "Group",
           "RECIPE", "RecipeCheck", "TOLERANCE", "Verdict", "aggregate", "centering_effects", "is_lareqa", "judge", "lareqa_benches",
           "load_metrics", "render", "strategy_label", "verdict", "verdict_json",
           "verdict_sentences", "write_compare_report"]
