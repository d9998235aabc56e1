"""Content hashes that key the pipeline's caches (Prefect cache keys and result dirs).

`tree_hash` and `dict_hash` are the library's (`hybrid.hashing`, re-exported here)."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from hybrid.hashing import dict_hash, tree_hash

__all__ = ["dict_hash", "library_hash", "source_hash", "tree_hash"]


def source_hash(location: str) -> str:
    """A local file/dir: its content hash. A URL or `upstream` (pinned, sha-checked files):
    the location itself."""
    p = Path(location).expanduser()
    if location and p.exists():
        return tree_hash(p)
    return dict_hash({"location": location})


@functools.cache
def library_hash(*parts: str) -> str:
    """sha256 of the hybrid library's Python sources under `parts` (e.g. "train", "model";
    none: all but the CLI), so a library change invalidates the cached results it produced."""
    import hybrid

    root = Path(hybrid.__file__).parent
    dirs = [root / p for p in parts] if parts else [root]
    h = hashlib.sha256()
    for d in dirs:
        files = [d] if d.is_file() else sorted(d.rglob("*.py"))
        for f in files:
            if "cli" in f.relative_to(root).parts[:1]:
                continue
            h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\1")
    return h.hexdigest()
