"""The two kinds of text an encoder embeds: "query" and "passage" (each with its own prefix,
maximum length and, for a centered model, means). Kept free of torch so that light modules
(`hybrid.centering`, `hybrid.evaluation.encode`) check kinds the same way as the encoder."""

from __future__ import annotations

from typing import Literal

from hybrid.errors import HybridError

Kind = Literal["query", "passage"]
KINDS: tuple[str, str] = ("query", "passage")


def check_kind(kind: str) -> str:
    """`kind` if it is "query" or "passage", else a HybridError naming it."""
    if kind not in KINDS:
        raise HybridError(f"kind: must be 'query' or 'passage', not {kind!r}")
    return kind
