"""Spec strings `KIND[:LOCATION][?key=value&...]`: training sources (`hybrid data pairs
--source`, `hybrid.data.sources.parse_source`) and the flows' `benchmarks` entries
(`flows.common.parse_benchmark`). Each caller checks the kind, location and option names and
words its own errors; the cutting and option parsing are here, once."""

from __future__ import annotations

import urllib.parse


def split_spec(text: str) -> tuple[str, str | None, str | None]:
    """(kind, location, options) of `KIND[:LOCATION][?OPTIONS]`: the options are what
    follows the last '?', the kind what precedes the first ':' before it. `location` is
    None without a ':', `options` None without a '?'."""
    head, mark, query = text.rpartition("?")
    if not mark:
        head, query = text, None
    kind, colon, location = head.partition(":")
    return kind, (location if colon else None), query


def parse_options(query: str, *, keep_blank: bool = False) -> dict[str, str]:
    """`key=value&...` as a dict (a later key wins; `keep_blank`: keep `key=` as an empty
    value, else drop it); ValueError for anything else. An empty string: no options."""
    if not query:
        return {}
    return dict(urllib.parse.parse_qsl(query, keep_blank_values=keep_blank, strict_parsing=True))
