"""Where the tool keeps things: the user cache and the offline data directory."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The user cache (materialized models, downloads): $HYBRID_CACHE or the platform's."""
    env = os.environ.get("HYBRID_CACHE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("hybrid-retriever"))


def default_data_dir() -> Path | None:
    """Offline data: $HYBRID_DATA, else ../shared/data beside the project checkout."""
    env = os.environ.get("HYBRID_DATA")
    if env:
        return Path(env).expanduser()
    here = Path(__file__).resolve().parent.parent
    cand = here.parent / "shared" / "data"
    return cand if cand.is_dir() else None
