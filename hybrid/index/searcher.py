"""`Searcher`: queries against an index directory written by `build_index`.

    s = Searcher("idx")
    s.search(["where is the eiffel tower?"], k=10, langs=["de", "fr"])
    -> [[{"rank": 1, "id": "p17", "score": 0.87, "lang": "fr", "text": "..."}, ...]]

The query encoder is the model the manifest records: its spec is resolved again and the
weights hash (`model_fingerprint`) must equal the manifest's, else `HybridError` (an index
is only searched with the weights that encoded it; a `models:/...@champion` that moved on
needs a rebuilt index); so must its centering means (`hybrid.centering`, recorded as
manifest["model"]["centering"]). Queries are encoded with the backend the passages were (manifest["encoding"]["backend"]; `hybrid.onnx_encoder`) as kind
"query", then centered when the model has means (each query's language inferred: the
nearest language mean).

Language filter: exact, inside FAISS (an `IDSelectorBitmap` of the rows in the wanted
languages, one bitmap per language set, cached), for every index kind: flat returns the
exact top k among those rows; IVF and HNSW apply the selector while they search. No
over-fetching guess and no per-language sub-index (which would multiply the memory). Hits
are fewer than k only when the filter leaves fewer rows.

The passage table is memory-mapped (pyarrow), so the texts cost page cache, not heap.
`reload()` opens the directory again when its manifest changed and swaps the whole state
(index, table, encoder) in one reference assignment: a search that started keeps the state
it began with (the old files stay readable after the directory swap on Linux).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hybrid.errors import HybridError

MAX_K = 1000


@dataclass
class _State:
    """One opened version of the index directory."""

    manifest: dict
    digest: str  # sha256 of manifest.json's bytes
    index: object  # faiss.Index
    table: object  # pyarrow.Table: id, lang, text
    encoder: object  # BiEncoder or OnnxEncoder (the index's encoding backend)
    lang_rows: dict = field(default_factory=dict)  # lang -> np.ndarray of row numbers
    selectors: dict = field(default_factory=dict)  # frozenset(langs) -> (bitmap, selector)
    centering: object = None  # hybrid.centering.Centering of the model, if it has one
    backend: str = "torch"

    def encode(self, queries: list[str]) -> np.ndarray:
        """float32 [len(queries), dim]: `queries` as this version's passages expect them
        (the model's encoder, then its centering with each query's language inferred)."""
        q = self.encoder.encode(list(queries), "query", show_progress=False,
                                batch_size=max(1, len(queries)))
        return q if self.centering is None else self.centering.apply(q, "query")


def read_manifest(index_dir: str | os.PathLike) -> tuple[dict, str]:
    """(manifest, sha256 of its bytes) of an index directory (HybridError if it is not one)."""
    path = Path(index_dir) / "manifest.json"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise HybridError(f"--index {index_dir}: not an index directory (no manifest.json; "
                          f"build one with 'hybrid index build')") from None
    try:
        manifest = json.loads(raw)
        manifest["index"]["kind"], manifest["model"]["sha256"]  # noqa: B018 - shape check
    except (ValueError, KeyError, TypeError):
        raise HybridError(f"{path}: not an index manifest") from None
    return manifest, hashlib.sha256(raw).hexdigest()


class Searcher:
    """Search an index directory (see the module docstring). Thread-safe: searches may run
    concurrently with each other and with `reload()`."""

    def __init__(self, index_dir: str | os.PathLike, *, device: str | None = None,
                 backend: str | None = None, threads: int | None = None):
        self.index_dir = Path(index_dir)
        self.device = device
        self.backend = backend  # None: the index's own (manifest "encoding"), torch on a GPU
        self.threads = threads  # ONNX Runtime's threads per call (None: its default, all cores)
        self._lock = threading.Lock()
        self._state = self._open(read_manifest(self.index_dir), None)

    @property
    def manifest(self) -> dict:
        return self._state.manifest

    @property
    def digest(self) -> str:
        """sha256 of the manifest of the version being searched."""
        return self._state.digest

    def reload(self) -> bool:
        """Open the directory again if its manifest changed; True when the version changed.
        Searches in flight finish on the version they started with."""
        with self._lock:
            manifest, digest = read_manifest(self.index_dir)
            if digest == self._state.digest:
                return False
            self._state = self._open((manifest, digest), self._state)
            return True

    def current(self) -> _State:
        """The version being searched now (pass it to `search(at=...)` to pin one)."""
        return self._state

    def search(self, queries: list[str], k: int = 10, langs: list[str] | None = None, *,
               at: _State | None = None) -> list[list[dict]]:
        """Top-`k` hits per query, best first: dicts rank (1-based), id, score, lang, text.
        `langs`: keep only passages in these languages (None: all). `at`: the version
        (`current()`) to search, default the current one; one version serves the whole call."""
        state = at if at is not None else self._state
        if isinstance(queries, str) or not all(isinstance(q, str) and q.strip() for q in queries):
            raise HybridError("queries: expected a list of non-empty strings")
        if not 1 <= int(k) <= MAX_K:
            raise HybridError(f"k: must be between 1 and {MAX_K}, not {k}")
        if not queries:
            return []
        return self.search_vectors(state.encode(queries), k, langs, at=state)

    def search_vectors(self, vectors: np.ndarray, k: int = 10, langs: list[str] | None = None,
                       *, at: _State | None = None) -> list[list[dict]]:
        """`search` for query vectors already encoded with this version's encoder
        (`at.encode(queries)`, float32 [n, dim])."""
        state = at if at is not None else self._state
        if not 1 <= int(k) <= MAX_K:
            raise HybridError(f"k: must be between 1 and {MAX_K}, not {k}")
        scores, rows = self._search(state, vectors, int(k), langs)
        return [self._hits(state, s, r) for s, r in zip(scores, rows, strict=True)]

    # ------------------------------------------------------------------ internals
    def _open(self, read: tuple[dict, str], old: _State | None) -> _State:
        import faiss
        import pyarrow as pa
        import pyarrow.parquet as pq

        from hybrid.centering import Centering, centering_digest
        from hybrid.evaluation.encode import model_fingerprint
        from hybrid.model import resolve_model
        from hybrid.onnx_encoder import load_encoder

        manifest, digest = read
        want = manifest["model"]["sha256"]
        want_c = manifest["model"].get("centering")
        backend = self._backend(manifest)
        same = old is not None and old.manifest["model"]["sha256"] == want and old.backend == backend
        if same and old.manifest["model"].get("centering") == want_c:
            encoder, centering = old.encoder, old.centering
        else:
            spec = manifest["model"]["spec"]
            model_dir = resolve_model(spec)
            have = model_fingerprint(model_dir)
            if have != want:
                raise HybridError(f"--index {self.index_dir}: model {spec} has weights "
                                  f"{have[:12]}, the index was built with {want[:12]}; "
                                  f"rebuild the index with this model")
            have_c = centering_digest(model_dir)
            if have_c != want_c:
                raise HybridError(f"--index {self.index_dir}: model {spec} has centering means "
                                  f"{(have_c or 'none')[:12]}, the index was built with "
                                  f"{(want_c or 'none')[:12]}; rebuild the index with this model")
            centering = Centering.load(model_dir)
            encoder = load_encoder(model_dir, backend, threads=self.threads)
            if backend == "torch":
                encoder.eval()
                if self.device:
                    encoder.to(self.device)
        d = self.index_dir
        try:
            index = faiss.read_index(str(d / "index.faiss"))
            table = pq.read_table(pa.memory_map(str(d / "passages.parquet")))
        except Exception as exc:  # noqa: BLE001 - faiss/pyarrow errors: one line
            raise HybridError(f"--index {d}: cannot read the index files "
                              f"({' '.join(str(exc).split())[:200]})") from None
        if index.ntotal != table.num_rows or index.ntotal != manifest["index"]["count"]:
            raise HybridError(f"--index {d}: index has {index.ntotal} vectors, table "
                              f"{table.num_rows} rows, manifest {manifest['index']['count']}")
        langs = np.asarray(table.column("lang").to_numpy(zero_copy_only=False), dtype=object)
        lang_rows = {lang: np.flatnonzero(langs == lang) for lang in set(langs.tolist())
                     if lang is not None}
        return _State(manifest, digest, index, table, encoder, lang_rows, centering=centering,
                      backend=backend)

    def _backend(self, manifest: dict) -> str:
        """The query encoder's backend: the one asked for, else the one the passages were
        encoded with (an index from before backends: torch); torch on a GPU device."""
        from hybrid.evaluation.encode import encoding_backend

        if self.device and str(self.device) != "cpu":
            return "torch"
        return encoding_backend(self.backend or manifest.get("encoding", {}).get("backend") or "torch")

    def _search(self, state: _State, q: np.ndarray, k: int, langs):
        import faiss

        kind = state.manifest["index"]["kind"]
        params = state.manifest["index"].get("params", {})
        kw = {}
        if langs is not None:
            kw["sel"] = self._selector(state, langs)
        if kind == "hnsw":
            sp = faiss.SearchParametersHNSW(efSearch=max(int(params.get("efSearch", 128)), k), **kw)
        elif kind == "ivf":
            sp = faiss.SearchParametersIVF(nprobe=int(params.get("nprobe", 16)), **kw)
        else:
            sp = faiss.SearchParameters(**kw) if kw else None
        k = min(k, state.index.ntotal)
        return state.index.search(np.ascontiguousarray(q, dtype=np.float32), k, params=sp)

    def _selector(self, state: _State, langs) -> object:
        import faiss

        from hybrid.langs import validate_lang

        key = frozenset(validate_lang(x, where="lang") for x in langs)
        if not key:
            raise HybridError("lang: no language given (leave it out for all)")
        if key not in state.selectors:
            if len(state.selectors) >= 256:  # bounded: one bitmap (n/8 bytes) per language set
                state.selectors.clear()
            mask = np.zeros(state.index.ntotal, dtype=bool)
            for lang in key:
                mask[state.lang_rows.get(lang, [])] = True
            bits = np.packbits(mask, bitorder="little")
            state.selectors[key] = (bits, faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bits)))
        return state.selectors[key][1]

    @staticmethod
    def _hits(state: _State, scores: np.ndarray, rows: np.ndarray) -> list[dict]:
        keep = rows >= 0
        rows, scores = rows[keep], scores[keep]
        if not len(rows):
            return []
        t = state.table.take(rows).to_pydict()
        return [{"rank": i + 1, "id": t["id"][i], "score": round(float(scores[i]), 6),
                 "lang": t["lang"][i], "text": t["text"][i]} for i in range(len(rows))]
