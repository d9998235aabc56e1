"""Options shared by several commands, declared once."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from hybrid.onnx_encoder import BACKEND_HELP

#: `--backend` of every command that encodes (encode, evaluate, index build, center).
Backend = Annotated[str, typer.Option("--backend", help=BACKEND_HELP)]

#: `--backend` of the commands that encode queries against an index (search, serve).
QueryBackend = Annotated[Optional[str], typer.Option(  # noqa: UP045 (typer needs Optional on 3.10)
    "--backend", show_default=False,
    help="Query encoding backend: by default the index's own (its passages' backend); torch "
         "or onnx (both exact), onnx-int8 (faster, not exact: docs/model.md).")]
