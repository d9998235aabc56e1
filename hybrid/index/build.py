"""`build_index`: a persistent search index over a user's corpus, written as one directory.

    build_index("me5-small", "passages.jsonl", "idx", kind="hnsw")  -> Path("idx")

DIR holds (`INDEX_FILES`):
- `index.faiss`: the FAISS index (`faiss.write_index`), built by
  `hybrid.evaluation.search.DenseIndex` (kinds flat, ivf, hnsw, its parameters); vector i
  is passage row i;
- `passages.parquet`: row i = id, lang (null when the corpus has none), text;
- `manifest.json`: see `manifest`.

Encoding: the corpus is read in chunks of `chunk_size` passages (`read_corpus`) and each
chunk is encoded with `hybrid.evaluation.encode.encode_texts` as kind "passage": the code
and the Ray sharding evaluation uses, so the vectors equal evaluation's. Its cache keeps
every finished part (per chunk and shard), so a killed build run again resumes from the
finished shards. The directory is written with `hybrid.io.output_dir`: built in a temporary
directory beside DIR and swapped in whole at the end (a rebuild replaces the old index in
one atomic exchange; readers see the old set or the new one). Memory: one chunk of texts,
the vectors of the whole corpus (the index holds them anyway: 1.5 GB per 1M 384-d
passages, twice that for a moment while they are joined), the ids seen.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from pathlib import Path

import numpy as np

from hybrid.errors import HybridError

INDEX_FILES = ("index.faiss", "passages.parquet", "manifest.json")
MANIFEST_FORMAT = 1
HNSW_EF_SEARCH = 128  # DenseIndex searches HNSW with efSearch = max(128, k)


def build_index(model, corpus, out, kind: str = "flat", *, chunk_size: int = 100_000,
                shards: int = 1, batch_size: int = 64, bf16: bool = False, nprobe: int = 16,
                hnsw_m: int = 32, cache=None, registry: dict | None = None,
                progress: bool = True, backend: str | None = "auto") -> Path:
    """Encode the corpus file `corpus` with `model` (any model spec) and write the index
    directory `out` (see the module docstring); returns `out`. `registry`: extra facts
    about the model to record under manifest["model"]["registry"] (a `models:/` spec's
    name and version are recorded without it when the resolved path shows them).
    `backend`: the encoding backend (`hybrid.evaluation.encode.encoding_backend`), recorded
    in the manifest; the searcher encodes queries with the same one."""
    import faiss
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hybrid.centering import centering_digest
    from hybrid.evaluation.encode import encode_texts, encoding_backend, model_fingerprint
    from hybrid.evaluation.search import INDEX_KINDS, DenseIndex
    from hybrid.index.corpus import corpus_format, file_sha256, read_corpus
    from hybrid.io import check_output, output_dir
    from hybrid.model import resolve_model

    if kind not in INDEX_KINDS:
        raise HybridError(f"--kind: must be one of {', '.join(INDEX_KINDS)}, not {kind!r}")
    out = check_output(out, "dir", what="--out", names=INDEX_FILES)
    corpus = Path(corpus)
    fmt = corpus_format(corpus)
    t0 = time.perf_counter()
    model_dir = resolve_model(model)
    model_hash = model_fingerprint(model_dir)
    schema = pa.schema([("id", pa.string()), ("lang", pa.string()), ("text", pa.string())])
    backend = encoding_backend(backend, bf16)
    with output_dir(out, INDEX_FILES) as tmp:
        vectors, ids, langs = [], [], {}
        with pq.ParquetWriter(tmp / "passages.parquet", schema) as writer:
            for batch in read_corpus(corpus, chunk_size):
                emb = encode_texts(model_dir, batch.ids, batch.texts, "passage", shards=shards,
                                   bf16=bf16, batch_size=batch_size, cache=cache,
                                   progress=progress, langs=batch.langs, backend=backend)
                vectors.append(emb.vectors)
                ids.extend(batch.ids)
                writer.write_table(pa.table({"id": batch.ids, "lang": batch.langs,
                                             "text": batch.texts}, schema=schema))
                for lang in batch.langs:
                    langs[lang or ""] = langs.get(lang or "", 0) + 1
        t_enc = time.perf_counter() - t0
        from hybrid.evaluation.embeddings import Embeddings

        x = np.concatenate(vectors) if len(vectors) > 1 else vectors[0]
        del vectors
        index = DenseIndex(kind, nprobe=nprobe, hnsw_m=hnsw_m, gpu=False).add(Embeddings(ids, x))
        faiss.write_index(index._index, str(tmp / "index.faiss"))  # CPU index (gpu=False)
        params = _index_params(index, len(ids))
        from hybrid.io import write_json

        write_json(tmp / "manifest.json", {
            "format": MANIFEST_FORMAT,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "model": {"spec": str(model), "path": str(model_dir), "sha256": model_hash,
                      "centering": centering_digest(model_dir),
                      "registry": registry or _registry_from_path(str(model), model_dir)},
            "corpus": {"path": str(corpus.resolve()), "format": fmt,
                       "sha256": file_sha256(corpus)},
            "index": {"kind": kind, "params": params, "dim": int(x.shape[1]),
                      "count": len(ids), "metric": "inner_product"},
            "languages": {k or "none": v for k, v in sorted(langs.items())},
            "encoding": {"batch_size": batch_size, "bf16": bf16, "chunk_size": chunk_size,
                         "kind": "passage", "backend": backend},
            "seconds": {"encode": round(t_enc, 3), "total": round(time.perf_counter() - t0, 3)},
        })
    return out


def _index_params(index, n: int) -> dict:
    """The parameters that define `index` (a built DenseIndex) and its searches."""
    if index.kind == "ivf":
        return {"nlist": int(index._index.nlist), "nprobe": int(index._index.nprobe)}
    if index.kind == "hnsw":
        return {"M": index.hnsw_m, "efConstruction": int(index._index.hnsw.efConstruction),
                "efSearch": HNSW_EF_SEARCH}
    return {}


def _registry_from_path(spec: str, model_dir: Path) -> dict | None:
    """{"name", "version"} of a `models:/` spec whose resolved directory is the registry
    resolver's cache `.../<name>/v<version>` (tasks/mlflow_registry.py), else None."""
    if not spec.startswith("models:/"):
        return None
    m = re.fullmatch(r"v(\d+)", Path(model_dir).name)
    return {"name": Path(model_dir).parent.name, "version": m[1]} if m else None


def manifest_path(index_dir: str | os.PathLike) -> Path:
    return Path(index_dir) / "manifest.json"
