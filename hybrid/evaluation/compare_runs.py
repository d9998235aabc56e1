"""The rows of a comparison, read from JSON files (`hybrid compare-report`).

A rows file is either a comparison's own `compare.json` (its `runs`: what the
`hybrid-compare` flow evaluated) or a JSON list of runs written by hand for models trained,
merged and evaluated with the CLI. A run is
`{"label": "merge-mono-distill", "seed": 1, "evals": {"xquad-r": EVAL_DIR, ...}}` with
optional `model` (default: the one model the other runs name, else "model"), `strategy`
(default: the label when it is a single strategy or "zero-shot", else "recipe"), `alpha` (a
hybrid row's; default: the training config's) and `centering`. EVAL_DIR holds `hybrid evaluate`'s metrics.json; a relative
EVAL_DIR is relative to the rows file.

`read_runs` joins the files in order; a run given twice (same model, label, seed and
centering) is kept once when its evaluations are the same directories, and refused when
they differ. Every problem is one `HybridError` naming the file and the run.
"""

from __future__ import annotations

import json
from pathlib import Path

from hybrid.errors import HybridError
from hybrid.evaluation.compare_groups import ZERO_SHOT
from hybrid.evaluation.compare_report import RUN_FIELDS
from hybrid.evaluation.compare_verdict import RECIPE, SINGLE_STRATEGIES


def read_runs(paths: list[str | Path]) -> list[dict]:
    """The runs of all `paths`, in order, checked and completed as the module says."""
    if not paths:
        raise HybridError("rows: give at least one rows file (a compare.json or a JSON list of runs)")
    read = [(path, _run(raw, path, i)) for path in map(Path, paths) for i, raw in enumerate(_load(path))]
    named = {r["model"] for _, r in read if r["model"]}
    default = named.pop() if len(named) == 1 else "model"
    runs, seen = [], {}
    for path, run in read:
        run["model"] = run["model"] or default
        key = (run["model"], run["label"], run["seed"], run["centering"])
        if key in seen:
            if seen[key]["evals"] != run["evals"]:
                raise HybridError(f"{path}: run {_name(run)} is given twice with different "
                                  f"evaluations ({seen[key]['evals']} and {run['evals']})")
            continue
        seen[key] = run
        runs.append(run)
    return runs


def _load(path: Path) -> list:
    if not path.is_file():
        raise HybridError(f"{path}: no such rows file")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HybridError(f"{path}: not a JSON file ({e})") from None
    runs = doc.get("runs") if isinstance(doc, dict) else doc
    if not isinstance(runs, list) or not runs:
        raise HybridError(f"{path}: expected a compare.json with runs or a non-empty JSON list of runs")
    return runs


def _run(raw, path: Path, i: int) -> dict:
    where = f"{path}: run {i + 1}"
    if not isinstance(raw, dict) or not isinstance(raw.get("label"), str) or not raw["label"].strip():
        raise HybridError(f"{where}: expected an object with a label")
    unknown = sorted(set(raw) - set(RUN_FIELDS))
    if unknown:
        raise HybridError(f"{where}: unknown fields {', '.join(unknown)} (known: {', '.join(RUN_FIELDS)})")
    label = raw["label"]
    strategy = raw.get("strategy") or (label if label in (*SINGLE_STRATEGIES, ZERO_SHOT) else RECIPE)
    alpha = raw.get("alpha")
    if strategy == "hybrid" and alpha is None:
        from hybrid.train.config import DataArgs

        alpha = DataArgs.alpha
    seed = raw.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise HybridError(f"{where} ({label}): seed must be an integer or null, not {seed!r}")
    evals = raw.get("evals")
    if not isinstance(evals, dict) or not evals:
        raise HybridError(f"{where} ({label}): evals must map each benchmark to its evaluation directory")
    run = {**{k: raw.get(k) for k in RUN_FIELDS}, "model": raw.get("model") or None,
           "strategy": strategy, "alpha": alpha, "centering": bool(raw.get("centering")), "seed": seed}
    run["evals"] = {str(b): str(_eval_dir(d, path, f"{where} ({_name(run)}), {b}"))
                    for b, d in evals.items()}
    return run


def _eval_dir(d, path: Path, where: str) -> Path:
    if not isinstance(d, str) or not d:
        raise HybridError(f"{where}: expected an evaluation directory, not {d!r}")
    p = Path(d).expanduser()
    p = p if p.is_absolute() else (path.parent / p)
    if not (p / "metrics.json").is_file():
        raise HybridError(f"{where}: {p}/metrics.json not found (the output of 'hybrid evaluate')")
    return p.resolve()


def _name(run: dict) -> str:
    return f"{run['label']!r}" + ("" if run.get("seed") is None else f" seed {run['seed']}")


__all__ = ["read_runs"]
