"""The figures of a strategy comparison: runs' metrics.json files read into groups of seeds.

Input: *runs*, one dict per evaluated model:
`{"label": "hybrid (alpha=0.5)", "strategy": "hybrid", "alpha": 0.5, "seed": 0,
"model": "me5-small", "evals": {"xquad-r": EVAL_DIR, "mlqa-r": EVAL_DIR}}` (optional
`"centering": True`) where each EVAL_DIR holds the `metrics.json` of `hybrid evaluate`
(strategy "zero-shot": the untrained model, seed None). Runs with the same (model, label) are
the seeds of one `Group`; each of its `Figure`s holds the value per seed, the mean over them and
the sample standard deviation (None for one seed). `aggregate` keeps the input order.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd

from hybrid.evaluation.bitext import BITEXT_METRICS
from hybrid.evaluation.report import map_matrix

KINDS = (("mono", "Mo"), ("cross", "Cr"), ("multi", "Mul"))
RECALLS = ("r@1", "r@10")
ZERO_SHOT = "zero-shot"
CENTERED = " + centering"


@dataclass(frozen=True)
class Figure:
    """One figure (e.g. "multi.map") of one group on one benchmark.

    values: one per seed, NaN where that run's metrics.json has none; mean: over the non-NaN
    values (None: none); std: their sample standard deviation (None: fewer than two)."""

    values: list[float]
    mean: float | None
    std: float | None

    @classmethod
    def of(cls, values: list[float]) -> Figure:
        ok = np.array(values, dtype=float)
        ok = ok[~np.isnan(ok)]
        return cls(values, float(ok.mean()) if len(ok) else None,
                   float(ok.std(ddof=1)) if len(ok) > 1 else None)


@dataclass
class Group:
    """The seeds of one (model, label): their figures per benchmark and mean mAP matrices.

    figures: {benchmark: {key: Figure}}, keys as in `_keys` (LAReQA: "mono.map", "cross.r@1",
    ..., "language_bias"; bitext: "xx-en.accuracy@1", ...); matrices: {LAReQA benchmark: query
    x pool language mean mAP}; seeds and n: the runs' seeds in input order and their count."""

    model: str
    label: str
    strategy: str
    alpha: float | None
    centering: bool
    seeds: list
    n: int
    figures: dict[str, dict[str, Figure]]
    matrices: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)

    def figure(self, bench: str, key: str) -> Figure | None:
        """The figure `key` on `bench` (None: this group has no such figure)."""
        return self.figures.get(bench, {}).get(key)

    def mean(self, bench: str, key: str) -> float | None:
        f = self.figure(bench, key)
        return None if f is None else f.mean

    def name(self, several_models: bool) -> str:
        """The row name: the label, prefixed by the model when there are several."""
        return f"{self.model} · {self.label}" if several_models else self.label

    def to_json(self) -> dict:
        """compare.json's group: every field but the matrices."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "matrices"}
        out["figures"] = {b: {k: asdict(f) for k, f in fs.items()} for b, fs in self.figures.items()}
        return out


def strategy_label(strategy: str, alpha: float | None = None) -> str:
    """The row label of a strategy: `hybrid (alpha=0.5)` for hybrid, else the name."""
    return f"hybrid (alpha={alpha:g})" if strategy == "hybrid" and alpha is not None else strategy


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower()


def load_metrics(runs: list[dict]) -> list[dict]:
    """Each run with `metrics` = {benchmark: metrics.json dict} added."""
    out = []
    for r in runs:
        m = {b: json.loads((Path(d) / "metrics.json").read_text(encoding="utf-8"))
             for b, d in r["evals"].items()}
        out.append({**r, "metrics": m})
    return out


def _value(metrics: dict, key: str) -> float:
    s = metrics["summary"]
    v = s.get("language_bias") if key == "language_bias" else (s.get(key.split(".")[0]) or {}).get(
        key.split(".", 1)[1])
    return float("nan") if v is None else float(v)


def _keys(metrics: dict | None = None) -> list[str]:
    """The figures of one benchmark's metrics.json: LAReQA's (mAP, recalls, bias per kind of
    setting) or, for bitext retrieval (Tatoeba), accuracy@1 and MRR@10 per direction."""
    summary = (metrics or {}).get("summary", {})
    if summary and "mono" not in summary:
        return [f"{d}.{m}" for d in summary for m in BITEXT_METRICS]
    return [f"{k}.{m}" for k, _ in KINDS for m in ("map", *RECALLS)] + ["language_bias"]


def is_lareqa(figures: dict) -> bool:
    """Whether one benchmark's figures ({key: Figure}) are LAReQA's (not bitext retrieval)."""
    return "mono.map" in figures


def aggregate(runs: list[dict]) -> list[Group]:
    """The runs (with `metrics`, else read by `load_metrics`) as groups of seeds, one per
    (model, label) in input order; a group's strategy, alpha and centering are its first run's."""
    by_key: dict[tuple, list[dict]] = {}
    for r in load_metrics(runs) if runs and "metrics" not in runs[0] else runs:
        by_key.setdefault((r["model"], r["label"]), []).append(r)
    return [_group(rs) for rs in by_key.values()]


def _group(runs: list[dict]) -> Group:
    figures, matrices = {}, {}
    for b in dict.fromkeys(b for r in runs for b in r["metrics"]):
        ms = [r["metrics"][b] for r in runs if b in r["metrics"]]
        figures[b] = {key: Figure.of([_value(m, key) for m in ms]) for key in _keys(ms[0])}
        if is_lareqa(figures[b]):
            matrices[b] = sum(map_matrix(m) for m in ms) / len(ms)
    r = runs[0]
    return Group(model=r["model"], label=r["label"], strategy=r["strategy"], alpha=r.get("alpha"),
                 centering=bool(r.get("centering")), seeds=[x.get("seed") for x in runs],
                 n=len(runs), figures=figures, matrices=matrices)


def lareqa_benches(groups: list[Group]) -> list[str]:
    """The LAReQA benchmarks of the groups (Tables 1 and 2, the charts), in order."""
    return list(dict.fromkeys(b for g in groups for b, f in g.figures.items() if is_lareqa(f)))


__all__ = ["CENTERED", "KINDS", "RECALLS", "ZERO_SHOT", "Figure", "Group", "aggregate",
           "is_lareqa", "lareqa_benches", "load_metrics", "slug", "strategy_label"]
