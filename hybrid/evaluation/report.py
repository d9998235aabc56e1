"""The files `hybrid evaluate` writes from a metrics dict (each one atomically).

- `metrics.json`: the dict itself (summary, settings, counts, skipped, meta, ...);
- `map_matrix.csv`: mAP, rows = query language, columns = pool language + "multi";
- `map_matrix.png`: a heatmap of that matrix (`heatmap`, also used by the comparison report);
- `report.md`: the paper-shaped table (mAP x 100 for Mo / Cr / Mul, language bias), every
  metric per kind, and per-language tables.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hybrid.evaluation.metrics import METRICS
from hybrid.evaluation.settings import MULTI
from hybrid.io import atomic_path, write_json, write_text


def map_matrix(metrics: dict, metric: str = "map") -> pd.DataFrame:
    """Query language x (pool language..., "multi") table of one metric (NaN: no query)."""
    langs = metrics["languages"]
    cols = [*langs, MULTI]
    data = [[_get(metrics["settings"].get(f"{x}-{y}"), metric) for y in cols] for x in langs]
    return pd.DataFrame(data, index=pd.Index(langs, name="query"), columns=cols)


def write_outputs(metrics: dict, out: str | Path) -> dict[str, Path]:
    """Write the four outputs into `out`; returns their paths by name."""
    out = Path(out)
    matrix = map_matrix(metrics)
    paths = {"matrix_csv": out / "map_matrix.csv", "heatmap": out / "map_matrix.png",
             "report": out / "report.md", "metrics": out / "metrics.json"}
    write_text(paths["matrix_csv"], matrix.to_csv(float_format="%.6f"))
    heatmap(matrix, paths["heatmap"], _title(metrics))
    write_text(paths["report"], render_report(metrics))
    write_json(paths["metrics"], metrics)  # last: its presence means the set is complete
    return paths


def render_report(metrics: dict) -> str:
    """report.md as a string."""
    s, meta = metrics["summary"], metrics.get("meta", {})
    lines = [f"# {_title(metrics)}", ""]
    if meta:
        lines += [f"- model: `{meta.get('model')}`", f"- benchmark: {meta.get('benchmark')} "
                  f"({meta.get('split')}), languages: {', '.join(metrics['languages'])}",
                  f"- questions: {meta.get('questions')}, candidates: {meta.get('candidates')}", ""]
    lines += ["## Summary (mAP x 100, as in the paper)", "",
              "| Model | Mo | Cr | Mul | Language bias |", "| --- | ---: | ---: | ---: | ---: |",
              f"| {meta.get('model', '')} | {_pct(s['mono']['map'])} | {_pct(s['cross']['map'])} | "
              f"{_pct(s['multi']['map'])} | {_num(s['language_bias'], 1)} |", "",
              "Mo: macro mean over the mono settings (X-X); Cr: over the cross settings (X-Y, "
              "Y != X); Mul: over the multi settings (X against the pooled candidates of every "
              "language). Language bias: mean over questions of (max rank - min rank) of their "
              "parallel answers in the pooled setting (lower is better).", "",
              "## All metrics by kind (macro means)", "",
              "| kind | " + " | ".join(METRICS) + " |", "| --- |" + " ---: |" * len(METRICS)]
    for kind in ("mono", "cross", "multi"):
        lines.append(f"| {kind} | " + " | ".join(_num(s[kind][m]) for m in METRICS) + " |")
    matrix = map_matrix(metrics)
    lines += ["", "## mAP x 100 by query language (rows) and pool language (columns)", "",
              "| query | " + " | ".join(matrix.columns) + " |",
              "| --- |" + " ---: |" * len(matrix.columns)]
    for x, row in matrix.iterrows():
        lines.append(f"| {x} | " + " | ".join(_pct(v) for v in row) + " |")
    lines += ["", "## Per query language", "",
              "| query | Mo mAP | Cr mAP (mean) | Mul mAP | Mul R@1 | Mul nDCG@10 | language bias |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for x in metrics["languages"]:
        cross = [v for y, v in matrix.loc[x].items() if y not in (x, MULTI) and not np.isnan(v)]
        multi = metrics["settings"].get(f"{x}-{MULTI}")
        lines.append(f"| {x} | {_pct(matrix.loc[x, x])} | "
                     f"{_pct(np.mean(cross) if cross else None)} | {_pct(_get(multi, 'map'))} | "
                     f"{_num(_get(multi, 'r@1'))} | {_num(_get(multi, 'ndcg@10'))} | "
                     f"{_num(_get(multi, 'language_bias'), 1)} |")
    skipped = metrics.get("skipped", {})
    if any(skipped.values()):
        lines += ["", "## Questions skipped (no relevant answer in the pool)", "",
                  "| kind | skipped (question, setting) pairs |", "| --- | ---: |"]
        lines += [f"| {k} | {v} |" for k, v in skipped.items()]
    return "\n".join(lines) + "\n"


def _title(metrics: dict) -> str:
    meta = metrics.get("meta", {})
    return f"Evaluation of {meta.get('model', 'a model')} on {meta.get('benchmark', 'a benchmark')}"


def heatmap(matrix: pd.DataFrame, path: Path, title: str) -> None:
    """Write `matrix` (query language rows x pool language columns, the last one "multi"; mAP
    in [0, 1], NaN: no query) as a PNG heatmap at `path`, atomically; cells labelled mAP x 100,
    a white line before the last column, `title` after "mAP x 100 - "."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = matrix.to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * values.shape[1], 1.0 + 0.5 * values.shape[0]))
    im = ax.imshow(values, cmap="viridis", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(values.shape[1]), matrix.columns)
    ax.set_yticks(range(values.shape[0]), matrix.index)
    ax.set_xlabel("pool language")
    ax.set_ylabel("query language")
    ax.axvline(values.shape[1] - 1.5, color="white", linewidth=2)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if not np.isnan(values[i, j]):
                ax.text(j, i, f"{100 * values[i, j]:.0f}", ha="center", va="center", fontsize=7,
                        color="black" if values[i, j] > 0.6 else "white")
    ax.set_title(f"mAP x 100 - {title}", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def _get(d: dict | None, key: str) -> float:
    v = None if d is None else d.get(key)
    return float("nan") if v is None else float(v)


def _pct(v) -> str:
    return "-" if v is None or np.isnan(v) else f"{100 * v:.1f}"


def _num(v, digits: int = 3) -> str:
    return "-" if v is None or np.isnan(v) else f"{v:.{digits}f}"
