"""Content hashes that key the pipeline's caches (Prefect cache keys and result dirs)."""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path


def tree_hash(path: str | Path) -> str:
    """sha256 over the relative path and bytes of every file under `path` (or of the file)."""
    root = Path(path)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for p in files:
        h.update((p.relative_to(root).as_posix() if p != root else p.name).encode() + b"\0")
        with open(p, "rb") as f:
            for block in iter(lambda f=f: f.read(1 << 20), b""):
                h.update(block)
        h.update(b"\1")
    return h.hexdigest()


def dict_hash(obj) -> str:
    """sha256 of the canonical JSON of `obj` (sorted keys)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


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
