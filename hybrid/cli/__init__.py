"""`hybrid` command line: every pipeline step, runnable without Prefect.

Each area registers its commands from its own module (data, model, train, evaluate), so
the CLI stays a thin driver over the library. User errors (`HybridError`) print one line,
`error: <message>`, and exit with status 2.
"""

from __future__ import annotations

import sys

import typer

from hybrid.errors import HybridError

app = typer.Typer(
    name="hybrid",
    help="Train and evaluate multilingual dense retrievers with hybrid batch sampling.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def version() -> None:
    """Print the tool's version."""
    from hybrid import __version__

    typer.echo(__version__)


def _register() -> None:
    from hybrid.cli import data, evaluate, model, mteb, train

    for module in (data, model, train, evaluate, mteb):
        module.register(app)


@app.callback()
def _root() -> None:
    """Train and evaluate multilingual dense retrievers with hybrid batch sampling."""


_register()


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the exit status (2 for user errors)."""
    try:
        app(args=argv, prog_name="hybrid")
    except HybridError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # typer exits itself after --help and usage errors
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
