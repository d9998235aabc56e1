"""`hybrid mteb`: run MTEB tasks on a model and fold their main scores into a report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def mteb_command(
    model: Annotated[str, typer.Option(help="Model dir, 'me5-small', or an HF id.")],
    out: Annotated[Path, typer.Option(help="Output directory (metrics.json, report.md, mteb/).")],
    tasks: Annotated[Optional[str], typer.Option(  # noqa: UP045 (typer needs Optional on 3.10)
        help="Comma-separated mteb task names (e.g. MTOPIntentClassification,Tatoeba), or "
        "FILE.py:Class for a locally defined task. Default: mteb_adapter.DEFAULT_TASKS "
        "(MTOP intent and domain, XQuAD and MLQA retrieval, Tatoeba).")] = None,
    batch_size: Annotated[int, typer.Option(help="Encoding batch size.")] = 64,
    bf16: Annotated[bool, typer.Option(help="Encode under bfloat16 autocast.")] = False,
) -> None:
    """Run MTEB tasks with the tool's encoder; writes metrics.json, report.md, mteb/."""
    from hybrid.evaluation.mteb_adapter import DEFAULT_TASKS, parse_tasks, run_mteb

    m = run_mteb(model, parse_tasks(tasks or ",".join(DEFAULT_TASKS)), out,
                 batch_size=batch_size, bf16=bf16)
    for task, row in m["settings"].items():
        typer.echo(f"{task}  main score {row['main_score']:.4f}")
    typer.echo(f"mean main score {m['summary']['all']['main_score']:.4f}  "
               f"({m['meta']['seconds']['total']:.0f} s)")
    typer.echo(f"wrote {out}/metrics.json, report.md, mteb/")


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.command("mteb")(mteb_command)
