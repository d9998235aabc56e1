"""Content hashes, one definition each (sha256, hex digests). Some are persisted (embedding
caches and index manifests key on `tree_hash` of a model directory, the pipeline's Prefect
cache keys on `tree_hash` and `dict_hash`, checkpoints and downloads record `sha256_file`),
so a hash's definition never changes:

- `sha256_file(path)`: a file's bytes, read 1 MiB at a time; `sha256_bytes(data)`: bytes
  in memory (the same digest as the file holding them).
- `tree_hash(path, exclude)`: every file under a directory, in sorted path order, as
  `relative/posix/path \\0 bytes \\1` (a single file: its name, then its bytes);
  `exclude` names relative paths left out (a model's centering means, say).
- `dict_hash(obj)`: the canonical JSON of `obj` (sorted keys, `str` for what JSON lacks).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Collection
from pathlib import Path

_BLOCK = 1 << 20
_TREES: dict[tuple, str] = {}


def _update_file(h, path: str | os.PathLike) -> None:
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            h.update(block)


def sha256_bytes(data: bytes) -> str:
    """sha256 of `data` (equal to `sha256_file` of a file holding them)."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, read 1 MiB at a time (downloads, checkpoints, embedding
    parts, corpora)."""
    h = hashlib.sha256()
    _update_file(h, path)
    return h.hexdigest()


def tree_files(path: str | Path, exclude: Collection[str] = ()) -> list[Path]:
    """The files `tree_hash` reads: `path` itself if it is a file, else every file under it
    whose relative posix path is not in `exclude`, sorted."""
    root = Path(path)
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*")
                  if p.is_file() and p.relative_to(root).as_posix() not in exclude)


def tree_hash(path: str | Path, exclude: Collection[str] = (), *, memo: bool = False) -> str:
    """sha256 over the relative path and bytes of every file under `path` (or of the file,
    named by its name) but those whose relative posix path is in `exclude`. `memo`: remember
    the result per process for the same files, sizes and modification times."""
    root = Path(path)
    files = tree_files(root, exclude)
    stamp = None
    if memo:
        stamp = (str(root.resolve()), tuple(sorted(exclude))) + tuple(
            (str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
        if stamp in _TREES:
            return _TREES[stamp]
    h = hashlib.sha256()
    for p in files:
        h.update((p.relative_to(root).as_posix() if p != root else p.name).encode() + b"\0")
        _update_file(h, p)
        h.update(b"\1")
    digest = h.hexdigest()
    if stamp is not None:
        _TREES[stamp] = digest
    return digest


def dict_hash(obj) -> str:
    """sha256 of the canonical JSON of `obj` (sorted keys)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()
