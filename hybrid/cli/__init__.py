"""`hybrid` command line: every pipeline step, runnable without Prefect.

Each area registers its commands from its own module (data, model, train, evaluate), so
the CLI stays a thin driver over the library. Every failure prints one line to stderr:
- user errors (`HybridError`) and usage errors (a missing or unknown option, a bad value):
  `error: <option or file>: <problem>`, exit status 2;
- Ctrl-C: `error: interrupted ...`, exit status 130 (outputs are swapped in whole at the
  end, so the earlier output is still there and complete);
- anything else (a bug, or a failure the library does not yet name): `error: unexpected
  <type>: <message>`, redacted (`hybrid.redact`), exit status 1; `--debug` anywhere on the
  command line (or HYBRID_DEBUG=1) prints the redacted traceback as well.
"""

from __future__ import annotations

import os
import sys
import traceback

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
    from hybrid.cli import compare, data, evaluate, merge, model, mteb, search, train

    for module in (data, model, merge, train, evaluate, compare, mteb, search):
        module.register(app)


@app.callback()
def _root() -> None:
    """Train and evaluate multilingual dense retrievers with hybrid batch sampling."""


_register()


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the exit status (2 user error, 130 interrupted, 1 bug)."""
    from typer._click import exceptions as click_exc

    from hybrid.redact import redact

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("HYBRID_DEBUG") == "1"
    argv = [a for a in argv if a != "--debug"]
    try:
        code = app(args=argv, prog_name="hybrid", standalone_mode=False)
    except HybridError as exc:
        return _fail(str(exc), 2)
    except click_exc.NoArgsIsHelpError as exc:
        typer.echo(exc.ctx.get_help())
        return 2
    except click_exc.ClickException as exc:
        return _fail(_usage(exc), 2)
    except (typer.Abort, KeyboardInterrupt):
        return _fail(INTERRUPTED, 130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, no traceback
        if debug:
            print(redact("".join(traceback.format_exception(exc))), file=sys.stderr, end="")
        first = (str(exc).strip().splitlines() or [""])[0]
        return _fail(f"unexpected {type(exc).__name__}: {redact(first)}"
                     + ("" if debug else " (run again with --debug for the traceback)"), 1)
    if code == 130:  # Typer turns Ctrl-C into Exit(130)
        return _fail(INTERRUPTED, 130)
    return code if isinstance(code, int) else 0


INTERRUPTED = ("interrupted; outputs are swapped in whole, so each one is as it was before "
               "or complete")


def run() -> None:
    """The `hybrid` console script: `main()` as the process's exit status. After Ctrl-C the
    process ends at once (outputs are already whole or untouched, Ray already shut down):
    the interpreter's teardown could crash in Ray's or torch's threads (SIGSEGV seen after an
    interrupted `hybrid evaluate`)."""
    code = main()
    if code == 130:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    sys.exit(code)


def _fail(message: str, code: int) -> int:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    return code


def _usage(exc) -> str:
    """A Click usage error as `<option>: <problem> (see hybrid COMMAND --help)`."""
    from typer._click import exceptions as click_exc

    param = getattr(exc, "param", None)
    name = "/".join(param.opts) if param is not None and getattr(param, "opts", None) else None
    if isinstance(exc, click_exc.MissingParameter) and name:
        text = f"{name}: missing (a required option)"
    elif isinstance(exc, click_exc.BadParameter) and name:
        text = f"{name}: {exc.message}"
    else:
        text = exc.format_message()
    ctx = getattr(exc, "ctx", None)
    return f"{text} (see {ctx.command_path} --help)" if ctx is not None else text


if __name__ == "__main__":
    sys.exit(main())
