"""Where the tool keeps things (the user cache, the offline data directory), which input
paths it may read (`$HYBRID_DATA_ROOTS`), and the names allowed to become path components."""

from __future__ import annotations

import os
import re
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


DATA_ROOTS_ENV = "HYBRID_DATA_ROOTS"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def data_roots() -> list[Path] | None:
    """The allowed input roots from $HYBRID_DATA_ROOTS (os.pathsep-separated), or None (any)."""
    raw = os.environ.get(DATA_ROOTS_ENV, "")
    roots = [Path(r).expanduser().resolve() for r in raw.split(os.pathsep) if r.strip()]
    return roots or None


def check_data_path(path: str | os.PathLike, *, what: str) -> Path:
    """`path` if it may be read: with $HYBRID_DATA_ROOTS set, it must lie (after resolving
    symlinks and `..`) under one of those roots; else HybridError naming `what`."""
    from hybrid.errors import HybridError

    p = Path(path).expanduser()
    roots = data_roots()
    if roots is None:
        return p
    real = p.resolve()
    if not any(real == r or r in real.parents for r in roots):
        raise HybridError(f"{what} {p}: outside the allowed data roots ({DATA_ROOTS_ENV}="
                          f"{os.pathsep.join(map(str, roots))})")
    return p


def validate_name(name: object, *, where: str) -> str:
    """A dataset or run name that may become a path component or a metric key: letters,
    digits, '.', '_', '-', starting with a letter or digit, at most 64 characters."""
    from hybrid.errors import HybridError

    if not isinstance(name, str) or not _NAME.match(name) or name in (".", ".."):
        raise HybridError(f"{where}: invalid name {name!r} (letters, digits, '.', '_', '-'; "
                          "at most 64 characters)")
    return name
