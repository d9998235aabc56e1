"""The flat metric names of an evaluation: one home for the contract that the MLflow runs,
the registry's promotion gate and the deployments' `promotion_metric` read.

A benchmark's metrics.json (`hybrid evaluate`) has `summary` groups (LAReQA: mono, cross,
multi; Tatoeba: xx-en, en-xx; ...) of metrics (`map`, `r@1`, ...) and per-setting values.
Its flat names are `<bench>.<Metric>.<group>` (e.g. `xquad_r.mAP.multi`), `<bench>.<number>`
for a number in the summary (`xquad_r.language_bias`) and `<bench>.<Headline>.<setting>`
for each setting's headline metric (`xquad_r.mAP.de-en`, `tatoeba.Acc1.de-en`).
"""

from __future__ import annotations

import re

from hybrid.evaluation.benchmarks import HEADLINE

#: Flat names of metrics.json's metric keys (others are used as they are).
METRIC_NAMES = {"map": "mAP", "r@1": "R1", "r@10": "R10", "mrr@10": "MRR10",
                "ndcg@10": "nDCG10", "r@100": "R100", "accuracy@1": "Acc1",
                "main_score": "main"}


def bench_prefix(benchmark: str) -> str:
    """`xquad-r` -> `xquad_r`."""
    return benchmark.replace("-", "_")


def _part(part: str) -> str:
    """A name part with characters MLflow refuses replaced by '_'."""
    return re.sub(r"[^\w\-./ ]", "_", str(part))


def metric_name(benchmark: str, metric: str, group: str | None = None) -> str:
    """The flat name of `metric` (a metrics.json key such as `map`) of `group` (a summary
    group or a setting) of `benchmark`: metric_name("xquad-r", "map", "multi") ==
    "xquad_r.mAP.multi"; without a group, a summary number: "xquad_r.language_bias"."""
    if group is None:
        return f"{bench_prefix(benchmark)}.{_part(metric)}"
    return f"{bench_prefix(benchmark)}.{METRIC_NAMES.get(metric, _part(metric))}.{_part(group)}"


#: The registry's default promotion metric: XQuAD-R's multilingual-pool mAP.
DEFAULT_PROMOTION_METRIC = metric_name("xquad-r", "map", "multi")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def flat_metrics(benchmark: str, metrics: dict) -> dict[str, float]:
    """The flat metrics of one benchmark's metrics.json (None values left out): every
    summary group's metrics, the summary's numbers, and each setting's headline metric
    (`HEADLINE[benchmark]`, default mAP)."""
    out: dict[str, float] = {}
    for group, vals in (metrics.get("summary") or {}).items():
        if isinstance(vals, dict):
            for m, v in vals.items():
                if _number(v):
                    out[metric_name(benchmark, m, group)] = float(v)
        elif _number(vals):
            out[metric_name(benchmark, group)] = float(vals)
    head = HEADLINE.get(benchmark, "map")
    for setting, vals in (metrics.get("settings") or {}).items():
        if vals and _number(vals.get(head)):
            out[metric_name(benchmark, head, setting)] = float(vals[head])
    return out
