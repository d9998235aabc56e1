"""Embeddings on disk: `{name}.npy` (float32 [n, d]) + `{name}.ids.npy` (str [n]) + `{name}.json`.

The JSON sidecar holds the row count, dimension and sha256 of both arrays; it is written
last (each file atomically), so a set whose sidecar exists and whose checksums match is
complete and intact. `load` verifies; a damaged set raises HybridError.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hybrid.errors import HybridError
from hybrid.hashing import sha256_file
from hybrid.io import atomic_path, write_json


@dataclass
class Embeddings:
    """Row i of `vectors` is the embedding of `ids[i]`."""

    ids: np.ndarray  # str [n]
    vectors: np.ndarray  # float32 [n, d]

    def __post_init__(self) -> None:
        self.ids = np.asarray(self.ids, dtype=str)
        self.vectors = np.ascontiguousarray(self.vectors, dtype=np.float32)
        if self.vectors.ndim != 2 or len(self.ids) != len(self.vectors):
            raise ValueError(f"ids {self.ids.shape} and vectors {self.vectors.shape} do not match")

    def __len__(self) -> int:
        return len(self.ids)

    def aligned(self, ids, *, what: str = "embeddings") -> np.ndarray:
        """The vectors of `ids`, in that order (HybridError naming the first missing id)."""
        import pandas as pd

        pos = pd.Index(self.ids).get_indexer(np.asarray(ids, dtype=str))
        if (pos < 0).any():
            missing = np.asarray(ids)[pos < 0][0]
            raise HybridError(f"{what}: no embedding for id {missing!r} ({int((pos < 0).sum())} missing)")
        return self.vectors[pos]

    def save(self, directory: str | Path, name: str) -> Path:
        """Write the three files under `directory`; returns the sidecar's path."""
        d = Path(directory)
        with atomic_path(d / f"{name}.npy") as tmp:
            np.save(tmp, self.vectors)
        with atomic_path(d / f"{name}.ids.npy") as tmp:
            np.save(tmp, self.ids)
        meta = {"rows": len(self), "dim": int(self.vectors.shape[1]),
                "sha256": sha256_file(d / f"{name}.npy"), "ids_sha256": sha256_file(d / f"{name}.ids.npy")}
        return write_json(d / f"{name}.json", meta)

    @classmethod
    def load(cls, directory: str | Path, name: str) -> Embeddings:
        """Read and verify a set written by `save`."""
        d = Path(directory)
        if not verify(d, name):
            raise HybridError(f"{d / name}.npy: missing or damaged embeddings (checksum mismatch)")
        return cls(np.load(d / f"{name}.ids.npy"), np.load(d / f"{name}.npy"))


def verify(directory: str | Path, name: str) -> bool:
    """True if the set `name` under `directory` is complete and its checksums match."""
    d = Path(directory)
    try:
        meta = json.loads((d / f"{name}.json").read_text(encoding="utf-8"))
        return (meta["sha256"] == sha256_file(d / f"{name}.npy")
                and meta["ids_sha256"] == sha256_file(d / f"{name}.ids.npy"))
    except (OSError, ValueError, KeyError):
        return False
