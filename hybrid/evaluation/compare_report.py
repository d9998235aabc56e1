"""The strategy comparison report: tables, charts and a computed verdict from metrics.json files.

Input: *runs*, one dict per evaluated model:
`{"label": "hybrid (alpha=0.5)", "strategy": "hybrid", "alpha": 0.5, "seed": 0,
"model": "me5-small", "evals": {"xquad-r": EVAL_DIR, "mlqa-r": EVAL_DIR}}` where each
EVAL_DIR holds the `metrics.json` of `hybrid evaluate` (strategy "zero-shot": the untrained
model, seed None). Runs with the same (model, label) are seeds of one *group*; a group's
figure is the mean over its seeds and its spread the sample standard deviation (None for one
seed).

`write_compare_report(runs, out, meta=...)` writes into `out` (each file atomically,
`compare.json` last):
- `report.md`: Table 1 (mAP x 100, Mo / Cr / Mul per benchmark and group, as in the paper),
  Table 2 (language bias), R@1 / R@10 x 100, the verdict, links to the charts;
- `map-<benchmark>.png` (grouped bars: Mo / Cr / Mul per group, error bars = seed spread),
  `language-bias.png`, `heatmap-<benchmark>-<group>.png` (mean mAP matrix of each group,
  `hybrid.evaluation.report`'s heatmap);
- `compare.json`: the groups' figures and the verdict, machine-readable.

The verdict checks the paper's two claims for each model and benchmark: (1) hybrid (alpha =
`hybrid_alpha`) is within `tolerance` mAP of the best of the x-x-mono and x-y baselines on
each of Mo, Cr and Mul; (2) its language bias is lower than x-x-mono's. It is computed from
the figures, never written by hand; with one seed it says that the spread is not measured.

Runs with `"centering": True` (labels ending in `CENTERED`) are the same models with
per-language centering (`hybrid.centering`): the claims ignore them; `centering_effects`
compares each with its uncentered row and the best trained row with the centered zero-shot
model. A benchmark whose metrics.json is bitext retrieval (Tatoeba: accuracy@1 and MRR@10
per direction) gets a table of its own ("Out of domain") instead of Table 1's columns.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from hybrid.evaluation.bitext import BITEXT_METRICS
from hybrid.evaluation.report import _heatmap, map_matrix
from hybrid.io import atomic_path, write_json, write_text

KINDS = (("mono", "Mo"), ("cross", "Cr"), ("multi", "Mul"))
RECALLS = ("r@1", "r@10")
BASELINES = ("x-x-mono", "x-y")
ZERO_SHOT = "zero-shot"


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
    return "mono.map" in figures


def aggregate(runs: list[dict]) -> list[dict]:
    """Groups of seeds: {model, label, strategy, alpha, seeds, n, figures: {bench: {key:
    {"mean", "std", "values"}}}, matrices: {bench: mean mAP matrix}}, in input order."""
    groups: dict[tuple, dict] = {}
    for r in load_metrics(runs) if runs and "metrics" not in runs[0] else runs:
        g = groups.setdefault((r["model"], r["label"]), {
            "model": r["model"], "label": r["label"], "strategy": r["strategy"],
            "alpha": r.get("alpha"), "centering": bool(r.get("centering")), "seeds": [], "runs": []})
        g["seeds"].append(r.get("seed"))
        g["runs"].append(r)
    out = []
    for g in groups.values():
        benches = list(dict.fromkeys(b for r in g["runs"] for b in r["metrics"]))
        figures, matrices = {}, {}
        for b in benches:
            ms = [r["metrics"][b] for r in g["runs"] if b in r["metrics"]]
            figures[b] = {}
            for key in _keys(ms[0]):
                vals = [_value(m, key) for m in ms]
                arr = np.array(vals, dtype=float)
                ok = arr[~np.isnan(arr)]
                figures[b][key] = {"values": vals,
                                   "mean": float(ok.mean()) if len(ok) else None,
                                   "std": float(ok.std(ddof=1)) if len(ok) > 1 else None}
            if is_lareqa(figures[b]):
                matrices[b] = sum(map_matrix(m) for m in ms) / len(ms)
        out.append({**{k: g[k] for k in ("model", "label", "strategy", "alpha", "centering", "seeds")},
                    "n": len(g["runs"]), "figures": figures, "matrices": matrices})
    return out


def verdict(groups: list[dict], tolerance: float = 0.01, hybrid_alpha: float = 0.5) -> dict:
    """The two claims per model and benchmark, with the figures they rest on.

    Returns {"tolerance", "checks": [{model, benchmark, kind, hybrid, best_baseline, best,
    gap, spread, holds}], "bias": [{model, benchmark, hybrid, x-x-mono, holds}],
    "claim_close" / "claim_bias": True / False / None (not evaluated), "spread_measured",
    "sentences": [plain-language lines]}."""
    checks, bias, sentences = [], [], []
    models = list(dict.fromkeys(g["model"] for g in groups))
    spread_measured = any(g["n"] > 1 for g in groups if g["strategy"] != ZERO_SHOT)
    for model in models:
        mine = [g for g in groups if g["model"] == model and not g.get("centering")]
        hyb = [g for g in mine if g["strategy"] == "hybrid" and g["alpha"] is not None]
        hyb = min(hyb, key=lambda g: abs(g["alpha"] - hybrid_alpha), default=None)
        base = [g for g in mine if g["strategy"] in BASELINES]
        prefix = f"{model}: " if len(models) > 1 else ""
        if hyb is None or not base:
            sentences.append(f"{prefix}not evaluated: the comparison needs hybrid and at least one "
                             f"of {', '.join(BASELINES)}.")
            continue
        for bench in [b for b in hyb["figures"] if is_lareqa(hyb["figures"][b])]:
            line = []
            for kind, short in KINDS:
                h = hyb["figures"][bench][f"{kind}.map"]
                cands = [(g["figures"].get(bench, {}).get(f"{kind}.map", {}).get("mean"), g)
                         for g in base]
                cands = [(v, g) for v, g in cands if v is not None]
                if h["mean"] is None or not cands:
                    continue
                best, bg = max(cands, key=lambda c: c[0])
                sd = [s for s in (h["std"], bg["figures"][bench][f"{kind}.map"]["std"]) if s is not None]
                gap = h["mean"] - best
                ok = gap >= -tolerance
                checks.append({"model": model, "benchmark": bench, "kind": kind,
                               "hybrid": h["mean"], "best_baseline": bg["label"], "best": best,
                               "gap": gap, "spread": max(sd) if sd else None, "holds": ok})
                line.append(f"{short} {100 * h['mean']:.1f} vs {100 * best:.1f} ({bg['label']}, "
                            f"{100 * gap:+.1f}{_spread_note(sd)}) {'ok' if ok else 'NOT within'}")
            if line:
                sentences.append(f"{prefix}{bench}: {hyb['label']} against the best baseline: "
                                 + "; ".join(line) + ".")
            mono = next((g for g in base if g["strategy"] == "x-x-mono"), None)
            hb = hyb["figures"][bench]["language_bias"]["mean"]
            mb = mono["figures"].get(bench, {}).get("language_bias", {}).get("mean") if mono else None
            if hb is not None and mb is not None:
                bias.append({"model": model, "benchmark": bench, "hybrid": hb, "x-x-mono": mb,
                             "holds": hb < mb})
                sentences.append(f"{prefix}{bench}: language bias {hb:.1f} (hybrid) vs {mb:.1f} "
                                 f"(x-x-mono): {'lower' if hb < mb else 'NOT lower'} "
                                 f"({100 * (hb - mb) / mb:+.1f} %).")
    claim_close = all(c["holds"] for c in checks) if checks else None
    claim_bias = all(b["holds"] for b in bias) if bias else None
    summary = [
        f"Claim 1 (hybrid within {100 * tolerance:.1f} mAP points of the best baseline on each of "
        f"Mo, Cr, Mul): {_word(claim_close)}.",
        f"Claim 2 (hybrid's language bias lower than x-x-mono's): {_word(claim_bias)}."]
    if spread_measured:
        summary.append("Spread over seeds: sample standard deviation in the tables (mean ± sd); "
                       "a gap smaller than the spread is within run-to-run noise.")
    else:
        summary.append("One seed per strategy: the run-to-run spread is not measured yet, so "
                       "gaps of about one mAP point or less may be noise.")
    centering = centering_effects(groups)
    return {"tolerance": tolerance, "hybrid_alpha": hybrid_alpha, "checks": checks, "bias": bias,
            "claim_close": claim_close, "claim_bias": claim_bias,
            "spread_measured": spread_measured, "centering": centering,
            "sentences": summary + sentences + [c["sentence"] for c in centering]}


def centering_effects(groups: list[dict]) -> list[dict]:
    """Per benchmark: what centering changes for each centered group (against the same label
    without it), and what training adds over the centered zero-shot model (the best trained
    group, centered or not, on Mo and Mul; bias). Records with the figures and a sentence."""
    out = []
    by_label = {(g["model"], g["label"]): g for g in groups}
    for g in groups:
        if not g.get("centering"):
            continue
        base = by_label.get((g["model"], g["label"].removesuffix(CENTERED)))
        for b, f in g["figures"].items():
            keys = ("mono.map", "multi.map", "language_bias") if is_lareqa(f) else tuple(
                k for k in f if k.endswith("accuracy@1"))
            if base is None or b not in base["figures"]:
                continue
            delta = {k: _delta(f, base["figures"][b], k) for k in keys}
            words = ", ".join(f"{_short(k)} {_signed(k, d)}" for k, d in delta.items() if d is not None)
            out.append({"model": g["model"], "benchmark": b, "label": g["label"], "against": base["label"],
                        "delta": delta, "sentence": f"{b}: {g['label']} vs {base['label']}: {words}."})
    for model in dict.fromkeys(g["model"] for g in groups):
        zc = by_label.get((model, ZERO_SHOT + CENTERED))
        trained = [g for g in groups if g["model"] == model and g["strategy"] != ZERO_SHOT]
        if zc is None or not trained:
            continue
        for b, f in zc["figures"].items():
            keys = ("mono.map", "multi.map", "language_bias") if is_lareqa(f) else tuple(
                k for k in f if k.endswith("accuracy@1"))
            best = {}
            for k in keys:
                cands = [(g["figures"][b][k]["mean"], g["label"]) for g in trained
                         if b in g["figures"] and g["figures"][b][k]["mean"] is not None]
                if cands and f[k]["mean"] is not None:
                    v, label = (min if k == "language_bias" else max)(cands)
                    best[k] = {"best": v, "label": label, "delta": v - f[k]["mean"]}
            words = ", ".join(f"{_short(k)} {_signed(k, e['delta'])} ({e['label']})" for k, e in best.items())
            out.append({"model": model, "benchmark": b, "label": "training over centering",
                        "against": zc["label"], "best": best,
                        "sentence": f"{b}: best trained model vs {zc['label']}: {words}."})
    return out


CENTERED = " + centering"


def _delta(f: dict, base: dict, key: str) -> float | None:
    a, b = f[key]["mean"], base.get(key, {}).get("mean")
    return None if a is None or b is None else a - b


def _short(key: str) -> str:
    return {"mono.map": "Mo", "multi.map": "Mul", "language_bias": "bias"}.get(key, key.replace(".", " "))


def _signed(key: str, d: float) -> str:
    return f"{d:+.1f}" if key == "language_bias" else f"{100 * d:+.1f}"


def _spread_note(sd: list[float]) -> str:
    return f", seed sd {100 * max(sd):.1f}" if sd else ""


def _word(v: bool | None) -> str:
    return "not evaluated" if v is None else ("HOLDS" if v else "DOES NOT HOLD")


def _fmt(f: dict, scale: float = 100.0, digits: int = 1) -> str:
    if f["mean"] is None:
        return "-"
    s = f"{scale * f['mean']:.{digits}f}"
    return s + (f" ± {scale * f['std']:.{digits}f}" if f["std"] is not None else "")


def _name(g: dict, several_models: bool) -> str:
    return f"{g['model']} · {g['label']}" if several_models else g["label"]


def render(groups: list[dict], verdict_: dict, meta: dict | None = None,
           images: dict | None = None) -> str:
    """report.md as a string."""
    benches = lareqa_benches(groups)
    several = len({g["model"] for g in groups}) > 1
    lines = ["# Strategy comparison (arXiv 2408.10536, Tables 1 and 2)", ""]
    for k, v in (meta or {}).items():
        lines.append(f"- {k}: {v}")
    lines += ["", "## Verdict (computed from the figures below)", ""]
    lines += [f"- {s}" for s in verdict_["sentences"]]
    seeds = ", ".join(f"{_name(g, several)}: {g['n']}" for g in groups)
    lines += ["", "## Table 1: mAP x 100", "",
              f"Mo / Cr / Mul: macro means over the mono, cross and multilingual-pool settings. "
              f"Mean ± sample sd over seeds where a group has several (seeds per row: {seeds}).", "",
              "| Model | " + " | ".join(f"{b} {s}" for b in benches for _, s in KINDS) + " |",
              "| --- |" + " ---: |" * (3 * len(benches))]
    for g in groups:
        lines.append(f"| {_name(g, several)} | " + " | ".join(
            _fmt(g["figures"][b][f"{k}.map"]) if b in g["figures"] else "-"
            for b in benches for k, _ in KINDS) + " |")
    lines += ["", "## Table 2: language bias (mean max - min rank of the parallel answers in "
              "the pooled setting; lower is better)", "",
              "| Model | " + " | ".join(benches) + " |", "| --- |" + " ---: |" * len(benches)]
    for g in groups:
        lines.append(f"| {_name(g, several)} | " + " | ".join(
            _fmt(g["figures"][b]["language_bias"], 1.0) if b in g["figures"] else "-"
            for b in benches) + " |")
    for r in RECALLS:
        lines += ["", f"## {r.upper()} x 100", "",
                  "| Model | " + " | ".join(f"{b} {s}" for b in benches for _, s in KINDS) + " |",
                  "| --- |" + " ---: |" * (3 * len(benches))]
        for g in groups:
            lines.append(f"| {_name(g, several)} | " + " | ".join(
                _fmt(g["figures"][b][f"{k}.{r}"]) if b in g["figures"] else "-"
                for b in benches for k, _ in KINDS) + " |")
    for b in [b for b in dict.fromkeys(x for g in groups for x in g["figures"]) if b not in benches]:
        keys = list(dict.fromkeys(k for g in groups if b in g["figures"] for k in g["figures"][b]))
        lines += ["", f"## Out of domain: {b} (x 100, macro mean over language pairs)", "",
                  "| Model | " + " | ".join(keys) + " |", "| --- |" + " ---: |" * len(keys)]
        for g in groups:
            lines.append(f"| {_name(g, several)} | " + " | ".join(
                _fmt(g["figures"][b][k]) if b in g["figures"] else "-" for k in keys) + " |")
    if images:
        lines += ["", "## Charts", ""]
        lines += [f"![{name}]({Path(p).name})" for name, p in images.get("bars", {}).items()]
        lines += ["", "## mAP heatmaps (query language x pool language, mean over seeds)", ""]
        for name, p in images.get("heatmaps", {}).items():
            lines += [f"### {name}", "", f"![{name}]({Path(p).name})", ""]
    return "\n".join(lines).rstrip() + "\n"


def lareqa_benches(groups: list[dict]) -> list[str]:
    """The LAReQA benchmarks of the groups (Tables 1 and 2, the charts), in order."""
    return list(dict.fromkeys(b for g in groups for b, f in g["figures"].items() if is_lareqa(f)))


def _bars(groups: list[dict], bench: str, path: Path, several: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gs = [g for g in groups if bench in g["figures"]]
    width = 0.8 / max(1, len(gs))
    fig, ax = plt.subplots(figsize=(2.2 + 1.2 * len(gs), 3.6))
    x = np.arange(len(KINDS))
    for i, g in enumerate(gs):
        f = [g["figures"][bench][f"{k}.map"] for k, _ in KINDS]
        means = [100 * (v["mean"] if v["mean"] is not None else np.nan) for v in f]
        errs = [100 * v["std"] if v["std"] is not None else 0.0 for v in f]
        ax.bar(x + (i - (len(gs) - 1) / 2) * width, means, width, yerr=errs, capsize=3,
               label=_name(g, several))
    ax.set_xticks(x, [s for _, s in KINDS])
    ax.set_ylabel("mAP x 100")
    ax.set_title(f"{bench}: mAP by setting kind and strategy", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    _save(fig, path)


def _bias_bars(groups: list[dict], benches: list[str], path: Path, several: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(benches), figsize=(1.5 + 3.2 * len(benches), 3.6), squeeze=False)
    for ax, b in zip(axes[0], benches, strict=True):
        gs = [g for g in groups if b in g["figures"]]
        f = [g["figures"][b]["language_bias"] for g in gs]
        ax.bar(range(len(gs)), [v["mean"] if v["mean"] is not None else np.nan for v in f],
               yerr=[v["std"] or 0.0 for v in f], capsize=3, color=[f"C{i}" for i in range(len(gs))])
        ax.set_xticks(range(len(gs)), [_name(g, several) for g in gs], rotation=30, ha="right",
                      fontsize=7)
        ax.set_title(f"{b}: language bias (lower is better)", fontsize=9)
    _save(fig, path)


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def write_compare_report(runs: list[dict], out: str | Path, meta: dict | None = None,
                         tolerance: float = 0.01, hybrid_alpha: float = 0.5) -> dict:
    """Write report.md, the PNGs and compare.json into `out`; returns their paths."""
    out = Path(out)
    groups = aggregate(runs)
    v = verdict(groups, tolerance, hybrid_alpha)
    benches = lareqa_benches(groups)
    several = len({g["model"] for g in groups}) > 1
    images = {"bars": {}, "heatmaps": {}}
    for b in benches:
        p = out / f"map-{slug(b)}.png"
        _bars(groups, b, p, several)
        images["bars"][f"{b} mAP"] = str(p)
    p = out / "language-bias.png"
    _bias_bars(groups, benches, p, several)
    images["bars"]["language bias"] = str(p)
    for g in groups:
        for b, m in g["matrices"].items():
            name = f"{b} - {_name(g, several)}"
            p = out / f"heatmap-{slug(b)}-{slug(_name(g, several))}.png"
            _heatmap(m, p, name)
            images["heatmaps"][name] = str(p)
    write_text(out / "report.md", render(groups, v, meta, images))
    doc = {"meta": meta or {}, "verdict": v, "images": images,
           "groups": [{k: g[k] for k in ("model", "label", "strategy", "alpha", "centering", "seeds", "n",
                                         "figures")} for g in groups],
           "runs": [{k: r.get(k) for k in ("model", "label", "strategy", "alpha", "centering", "seed", "evals")}
                    for r in runs]}
    write_json(out / "compare.json", doc)
    return {"report": str(out / "report.md"), "json": str(out / "compare.json"), **images}


__all__ = ["aggregate", "verdict", "render", "write_compare_report", "strategy_label",
           "load_metrics"]

