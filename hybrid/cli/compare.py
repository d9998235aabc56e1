"""`hybrid compare-report`: the strategy comparison's report from evaluations made anywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from hybrid.errors import HybridError
from hybrid.evaluation.compare_verdict import TOLERANCE
from hybrid.train.config import DataArgs


def compare_report(
    rows: Annotated[list[Path], typer.Argument(
        metavar="ROWS...", help="compare.json files (the flow's) and JSON lists of runs "
             "({label, seed, evals: {benchmark: eval dir}}; docs/compare.md), joined in order.")],
    out: Annotated[Path, typer.Option(help="Directory of report.md, compare.json and the charts.")],
    meta: Annotated[Optional[list[str]], typer.Option(  # noqa: UP045 (typer needs Optional on 3.10)
        help="KEY=VALUE lines at the top of the report (e.g. 'machine=AMD EPYC'); repeatable.")] = None,
    tolerance: Annotated[float, typer.Option(
        help="Claim 1's margin: hybrid within this mAP of the best baseline.")] = TOLERANCE,
    hybrid_alpha: Annotated[float, typer.Option(
        help="The hybrid alpha the claims judge.")] = DataArgs.alpha,
) -> None:
    """Write the comparison report (tables with mean ± sd over seeds, verdict, recipe margins,
    charts) from evaluation directories: a flow's rows joined with rows run by the CLI."""
    from hybrid.evaluation.compare_report import write_compare_report
    from hybrid.evaluation.compare_runs import read_runs

    lines = {}
    for item in meta or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise HybridError(f"--meta: expected KEY=VALUE, not {item!r}")
        lines[key.strip()] = value.strip()
    if out.exists() and not out.is_dir():
        raise HybridError(f"--out: {out} is a file, not a directory")
    runs = read_runs(rows)
    out.mkdir(parents=True, exist_ok=True)
    paths = write_compare_report(runs, out, meta={**lines, "rows": ", ".join(map(str, rows))},
                                 tolerance=tolerance, hybrid_alpha=hybrid_alpha)
    groups = len({(r["model"], r["label"]) for r in runs})
    typer.echo(f"{len(runs)} runs in {groups} rows; wrote {paths['report']}, {paths['json']}")


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.command("compare-report")(compare_report)
