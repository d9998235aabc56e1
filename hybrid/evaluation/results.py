"""Outputs shared by the benchmarks beyond LAReQA (bitext, MIRACL, TREC, MTEB).

Every benchmark writes `report.md` and then `metrics.json` (last, each atomically, so its
presence means the set is complete). `metrics.json` has the LAReQA shape where it fits:
`summary` = {group: {metric: macro mean}}, `settings` = {key: {metric: value}}, `counts`,
`languages`, `meta`.
"""

from __future__ import annotations

import math
from pathlib import Path

from hybrid.errors import HybridError
from hybrid.io import write_json, write_text


def check_out(out) -> Path:
    """`out` as a Path, refused (HybridError) if it exists and is not a directory."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise HybridError(f"--out: {out} exists and is not a directory")
    return out


def write_result(metrics: dict, report: str, out) -> dict[str, Path]:
    """Write report.md, then metrics.json, into `out`; returns their paths."""
    out = Path(out)
    paths = {"report": out / "report.md", "metrics": out / "metrics.json"}
    write_text(paths["report"], report)
    write_json(paths["metrics"], metrics)
    return paths


def macro(rows: list[dict], names) -> dict:
    """{name: mean over rows (rows where it is None left out), None if no row has it}."""
    out = {}
    for m in names:
        vals = [r[m] for r in rows if r is not None and r.get(m) is not None]
        out[m] = float(sum(vals) / len(vals)) if vals else None
    return out


def md_table(first: str, rows: dict[str, dict], names, pct: bool = False) -> list[str]:
    """A markdown table: one row per key, one column per metric name."""
    lines = [f"| {first} | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
    for key, r in rows.items():
        lines.append(f"| {key} | " + " | ".join(fmt(None if r is None else r.get(m), pct)
                                               for m in names) + " |")
    return lines


def fmt(v, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    return f"{100 * v:.1f}" if pct else f"{v:.4f}"
