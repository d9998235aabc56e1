"""Top-k search over candidate embeddings with a FAISS inner-product index (beir-style).

    index = DenseIndex("flat").add(candidates)          # Embeddings (ids + vectors)
    run = index.search(queries, k=100)                   # DataFrame: qid, rank, cid, score

Embeddings are L2-normalised, so inner product is cosine. Index kinds:
- "flat": exact (IndexFlatIP), the default;
- "ivf":  IndexIVFFlat with nlist = round(sqrt(n)) clusters (k-means on the corpus),
          `nprobe` of them searched per query (default 16);
- "hnsw": IndexHNSWFlat, M = 32, efConstruction = 200, efSearch = max(128, k).
The approximate kinds trade exactness for speed on large corpora; `recall_vs_flat` measures
what they lose (the mean fraction of the exact top k that they return). When faiss has GPUs
(`faiss.get_num_gpus() > 0`, i.e. faiss-gpu is installed) flat and IVF indexes run on them;
HNSW stays on the CPU (FAISS has no GPU HNSW).

The evaluation metrics do not come from here (they use every relevant item's exact rank,
see `hybrid.evaluation.matrix`); this is the retrieval interface: the run file `hybrid
evaluate` writes, and search for callers with large corpora.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from hybrid.errors import HybridError
from hybrid.evaluation.embeddings import Embeddings

INDEX_KINDS = ("flat", "ivf", "hnsw")


class DenseIndex:
    """A FAISS inner-product index over candidate embeddings (see the module docstring)."""

    def __init__(self, kind: str = "flat", *, nprobe: int = 16, hnsw_m: int = 32,
                 gpu: bool | None = None):
        if kind not in INDEX_KINDS:
            raise HybridError(f"--index: must be one of {', '.join(INDEX_KINDS)}, not {kind!r}")
        self.kind = kind
        self.nprobe = int(nprobe)
        self.hnsw_m = int(hnsw_m)
        self.gpu = gpu
        self.ids: np.ndarray = np.array([], dtype=str)
        self._index = None

    @property
    def on_gpu(self) -> bool:
        """Whether searches run on a GPU (faiss-gpu with a visible GPU, kind flat or ivf)."""
        import faiss

        want = self.gpu if self.gpu is not None else True
        return bool(want and self.kind != "hnsw" and faiss.get_num_gpus() > 0)

    def add(self, corpus: Embeddings) -> DenseIndex:
        """Index `corpus` (replacing anything indexed before); returns self."""
        import faiss

        x = np.ascontiguousarray(corpus.vectors, dtype=np.float32)
        n, d = x.shape
        if n == 0:
            raise HybridError("search: empty corpus")
        if self.kind == "flat":
            index = faiss.IndexFlatIP(d)
        elif self.kind == "ivf":
            nlist = max(1, min(n, round(math.sqrt(n))))
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
            index.cp.seed = 0
            index.cp.min_points_per_centroid = 1  # small corpora: no "too few points" warning
            index.train(x)
            index.nprobe = min(self.nprobe, nlist)
        else:
            index = faiss.IndexHNSWFlat(d, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = 200
        if self.on_gpu:
            index = faiss.index_cpu_to_all_gpus(index)
        index.add(x)
        self._index, self.ids = index, np.asarray(corpus.ids, dtype=str)
        return self

    def search_arrays(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores [n, k'], candidate row indices [n, k']) with k' = min(k, corpus size);
        best first. Approximate kinds may return -1 (no result) in a row's last slots."""
        if self._index is None:
            raise RuntimeError("DenseIndex.search before add")
        k = min(int(k), len(self.ids))
        if k < 1:
            raise HybridError(f"search: k must be at least 1, not {k}")
        if self.kind == "hnsw":
            self._index.hnsw.efSearch = max(128, k)
        q = np.ascontiguousarray(queries, dtype=np.float32)
        return self._index.search(q, k)

    def search(self, queries: Embeddings, k: int = 100) -> pd.DataFrame:
        """The top-k run as a table: qid, rank (1-based), cid, score."""
        scores, idx = self.search_arrays(queries.vectors, k)
        kk = idx.shape[1]
        keep = (idx >= 0).ravel()
        return pd.DataFrame({
            "qid": np.repeat(np.asarray(queries.ids, dtype=str), kk)[keep],
            "rank": np.tile(np.arange(1, kk + 1), len(queries))[keep],
            "cid": self.ids[np.maximum(idx, 0)].ravel()[keep],
            "score": scores.ravel()[keep].astype(np.float32),
        })


def recall_vs_flat(index: DenseIndex, queries: np.ndarray, corpus: Embeddings, k: int = 100) -> float:
    """Mean over queries of |top-k(index) & top-k(exact)| / k: what an approximate index
    returns of the exact top k (1.0 for "flat", up to ties at the k-th score)."""
    exact = DenseIndex("flat", gpu=index.gpu).add(corpus)
    _, a = index.search_arrays(queries, k)
    _, b = exact.search_arrays(queries, k)
    hits = [len(set(x[x >= 0].tolist()) & set(y.tolist())) for x, y in zip(a, b, strict=True)]
    return float(np.mean(hits) / b.shape[1]) if len(hits) else float("nan")
