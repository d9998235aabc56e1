"""Options shared by several commands, declared once."""

from __future__ import annotations

from typing import Annotated

import typer

from hybrid.onnx_encoder import BACKEND_HELP

#: `--backend` of every command that encodes (encode, evaluate, index build, center).
Backend = Annotated[str, typer.Option("--backend", help=BACKEND_HELP)]
