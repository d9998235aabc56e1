"""Sharded, cached encoding of benchmark questions and candidates with Ray tasks.

Questions are encoded as kind "query" (their text), candidates as kind "passage" (the
answer-sentence text, the `sentence` column), with `hybrid.encoder.BiEncoder.encode`.

Sharding. The texts are put in the encoder's own order (token length, longest first, ties
in input order) and cut into batches of `batch_size`; shard i gets a contiguous run of whole
batches. Each shard is one Ray task (`num_cpus` = CPUs / shards, at least 1; one GPU each
when the cluster has GPUs) that runs `BiEncoder.encode` on its texts, which keeps that
order and batching. So every text is encoded in the same batch, padded to the same length,
whatever the shard count, and the results are bit-identical for 1 or N shards. One shard is
the degenerate case of the same path: one Ray task where Ray is there to use (initialised,
or a cluster in RAY_ADDRESS), else the same body in this process
(`hybrid.raycluster.local_only`: a local Ray start would cost more than the encoding).
Another batch size changes the batches, and so the vectors within
`hybrid.encoder.SCORE_ATOL` (the cache keys on it).

Cache. Entries live under `{cache}/embeddings/{model fingerprint}/{kind}-{table
fingerprint}-{fp32|bf16}-b{batch_size}/part-{i}-of-{n}.*` (see
`hybrid.evaluation.embeddings` for the files and their checksums). The model fingerprint
hashes every file of the model directory, the table fingerprint every (id, text) pair in
order. A part that exists and verifies (checksums and ids) is not recomputed, so an
interrupted run resumes where it stopped; a complete set written with another shard count
is used as is (the vectors do not depend on it). The driver writes each part as its task
finishes.

Ray: an already initialised Ray (a cluster, or the caller's session) is used as is;
otherwise, for more than one shard, a local one is started for the call and shut down
after it.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from hybrid.centering import Centering
from hybrid.errors import HybridError
from hybrid.evaluation.embeddings import Embeddings, verify
from hybrid.kinds import check_kind


def model_fingerprint(model_dir: str | Path) -> str:
    """`hybrid.hashing.tree_hash` of a model directory but its centering means
    (`hybrid.centering.FILE`: applied after encoding, so raw vectors do not depend on them),
    memoised per process on paths, sizes and modification times."""
    from hybrid.centering import FILE
    from hybrid.hashing import tree_hash

    return tree_hash(model_dir, exclude=(FILE,), memo=True)


def table_fingerprint(ids, texts) -> str:
    """sha256 over the (id, text) pairs, in order."""
    h = hashlib.sha256()
    for i, t in zip(ids, texts, strict=True):
        h.update(f"{i}\0{t}\1".encode())
    return h.hexdigest()


def cache_entry(model_dir: str | Path, ids, texts, kind: str, *, bf16: bool = False,
                batch_size: int = 64, cache: str | Path | None = None,
                backend: str | None = "auto") -> Path:
    """The cache directory of one (model, table, kind, backend and precision, batch size);
    `backend` as `encode_texts` resolves it (`encoding_backend`)."""
    from hybrid.paths import cache_dir

    backend = encoding_backend(backend, bf16)
    root = Path(cache) if cache is not None else cache_dir() / "embeddings"
    precision = backend if backend != "torch" else "bf16" if bf16 else "fp32"
    name = f"{kind}-{table_fingerprint(ids, texts)[:16]}-{precision}-b{batch_size}"
    return root / model_fingerprint(model_dir)[:16] / name


def encode_texts(model, ids, texts, kind: str, *, shards: int = 1, bf16: bool = False,
                 batch_size: int = 64, cache: str | Path | None = None,
                 progress: bool = True, langs=None, center: bool = True,
                 backend: str | None = "auto") -> Embeddings:
    """Embeddings of `texts` (rows in input order, keyed by `ids`) with the model `model`
    (a model dir, `me5-small` or an HF id), computed in `shards` Ray tasks or read from
    the cache (`cache` defaults to `{hybrid cache}/embeddings`). A model with centering
    means (`hybrid.centering`) gets them applied (`langs`: each text's language, None
    entries or None for all: inferred) unless `center` is False; the cache holds the raw
    vectors. `backend`: torch, onnx, onnx-int8 or auto (`resolve_backend`; with `bf16`, torch).
    """
    from hybrid.model import resolve_model

    ids = np.asarray(list(ids), dtype=str)
    texts = [str(t) for t in texts]
    if len(ids) != len(texts):
        raise ValueError(f"{len(ids)} ids but {len(texts)} texts")
    if len(set(ids.tolist())) != len(ids):
        raise HybridError(f"encode {kind}: duplicate ids")
    if int(shards) < 1:
        raise HybridError(f"--shards: must be at least 1, not {shards}")
    if int(batch_size) < 1:
        raise HybridError(f"--batch-size: must be at least 1, not {batch_size}")
    check_kind(kind)
    model_dir = resolve_model(model)
    if langs is not None and len(langs) != len(ids):
        raise ValueError(f"{len(ids)} ids but {len(langs)} languages")
    backend = encoding_backend(backend, bf16)
    raw = _encode_raw(model_dir, ids, texts, kind, shards, bf16, batch_size, cache, progress, backend)
    centering = Centering.load(model_dir) if center else None
    if centering is None:
        return raw
    return Embeddings(raw.ids, centering.apply(raw.vectors, kind, None if langs is None else list(langs)))


def encoding_backend(backend: str | None, bf16: bool = False) -> str:
    """The encoding backend: auto is torch under bf16 or where a GPU is visible (here, or in
    the connected Ray cluster), else `resolve_backend`'s choice."""
    from hybrid.onnx_encoder import resolve_backend

    if backend in (None, "auto"):
        if bf16 or _gpu_visible():
            return "torch"
    elif backend != "torch" and bf16:
        raise HybridError(f"--bf16: applies to the torch backend, not {backend}")
    return resolve_backend(backend)


def _gpu_visible() -> bool:
    import torch

    if torch.cuda.is_available():
        return True
    ray = sys.modules.get("ray")  # not imported: not connected to any cluster
    return ray is not None and ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0


def _encode_raw(model_dir, ids, texts, kind, shards, bf16, batch_size, cache, progress,
                backend="torch") -> Embeddings:
    entry = cache_entry(model_dir, ids, texts, kind, bf16=bf16, batch_size=batch_size, cache=cache,
                        backend=backend)
    complete = _complete_set(entry, ids, shards)
    if complete is not None:
        return complete
    names = [f"part-{i:03d}-of-{shards:03d}" for i in range(shards)]
    done = {n: Embeddings.load(entry, n) for n in names if verify(entry, n)}
    order = _encoder_order(model_dir, texts, kind)
    parts = _split(order, shards, batch_size)
    for n, rows in zip(names, parts, strict=True):  # a verified part must hold its rows
        if n in done and not np.array_equal(done[n].ids, ids[rows]):
            del done[n]
    todo = [(n, rows) for n, rows in zip(names, parts, strict=True) if n not in done]
    if todo and backend != "torch":  # exported once, here, before the shards load it
        from hybrid.onnx_encoder import export_onnx

        onnx_path = str(export_onnx(model_dir, int8=backend == "onnx-int8"))
    else:
        onnx_path = None
    for n, emb in _run_shards(model_dir, ids, texts, todo, kind, shards, bf16, batch_size, progress,
                              onnx_path):
        emb.save(entry, n)
        done[n] = emb
    return _merge([done[n] for n in names], ids)


def _complete_set(entry: Path, ids: np.ndarray, shards: int) -> Embeddings | None:
    """The embeddings from a complete, verified set of parts in `entry` (the requested
    shard count first, then any other: the vectors do not depend on it), else None."""
    counts = sorted({int(p.stem.rsplit("-of-", 1)[1]) for p in entry.glob("part-*-of-*.json")})
    for n in [shards] + [c for c in counts if c != shards]:
        names = [f"part-{i:03d}-of-{n:03d}" for i in range(n)]
        if all(verify(entry, x) for x in names):
            parts = [Embeddings.load(entry, x) for x in names]
            if sum(len(p) for p in parts) == len(ids):
                merged = _merge(parts, ids, strict=False)
                if merged is not None:
                    return merged
    return None


def _merge(parts: list[Embeddings], ids: np.ndarray, strict: bool = True) -> Embeddings | None:
    """Concatenate parts and put the rows in the order of `ids` (None if an id is missing
    and not `strict`)."""
    merged = Embeddings(np.concatenate([p.ids for p in parts]),
                        np.concatenate([p.vectors for p in parts]))
    if not strict and not np.array_equal(np.sort(merged.ids), np.sort(ids)):
        return None
    return Embeddings(ids, merged.aligned(ids, what="cached embeddings"))


def encode_benchmark(model, benchmark, **kwargs) -> tuple[Embeddings, Embeddings]:
    """(question embeddings by qid, candidate embeddings by cid) of a `Benchmark`; the
    keyword arguments are those of `encode_texts`."""
    q, c = benchmark.questions, benchmark.candidates
    return (encode_texts(model, q["qid"], q["text"], "query", langs=list(q["lang"]), **kwargs),
            encode_texts(model, c["cid"], c["sentence"], "passage", langs=list(c["lang"]), **kwargs))


def _encoder_order(model_dir: Path, texts: list[str], kind: str) -> np.ndarray:
    """Indices of `texts` in the order `BiEncoder.encode` processes them
    (`hybrid.encoder.length_order`, with the encoder's own tokenizer and settings)."""
    _, order = _tokenizer(str(model_dir)).length_order(texts, kind)
    return np.array(order, dtype=np.int64)


@functools.lru_cache(maxsize=4)
def _tokenizer(model_dir: str):
    """The encoder's tokenizer and settings in `model_dir` (no weights loaded)."""
    from hybrid.encoder import EncoderTokenizer

    return EncoderTokenizer.from_pretrained(model_dir)


def _split(order: np.ndarray, shards: int, batch_size: int) -> list[np.ndarray]:
    """Cut `order` into `shards` runs of whole batches (as even as batches allow)."""
    n_batches = -(-len(order) // batch_size)
    cuts = [min(len(order), (n_batches * i // shards) * batch_size) for i in range(shards + 1)]
    return [order[cuts[i]:cuts[i + 1]] for i in range(shards)]


def _run_shards(model_dir, ids, texts, todo, kind, shards, bf16, batch_size, progress,
                onnx_path=None):
    """Yield (part name, Embeddings) as the Ray tasks finish (or, for one shard with no Ray
    to use, `hybrid.raycluster.local_only`, as this process encodes it); the bar moves per
    chunk."""
    if not todo:
        return
    from hybrid.raycluster import local_only, quiet_session

    desc = f"encode {'queries' if kind == 'query' else 'passages'}"
    if local_only(shards):
        yield from _run_here(model_dir, ids, texts, todo, kind, bf16, batch_size, progress,
                             onnx_path, desc)
        return
    import ray

    with quiet_session():
        res = ray.cluster_resources()
        total_cpus = max(1, int(res.get("CPU", 1)))
        cpus = max(1, total_cpus // min(len(todo), total_cpus))
        task = _shard_task().options(num_cpus=cpus, num_gpus=1 if res.get("GPU", 0) else 0)
        pending = {task.remote(str(model_dir), [texts[i] for i in rows], kind, batch_size,
                               bf16, cpus, onnx_path): (n, rows, []) for n, rows in todo}
        bar = tqdm(total=sum(len(r) for _, r in todo), desc=desc, unit="text", disable=not progress)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            gen = ready[0]
            name, rows, chunks = pending[gen]
            try:
                chunks.append(ray.get(next(gen)))
                bar.update(len(chunks[-1]))
            except StopIteration:
                del pending[gen]
                yield name, Embeddings(ids[rows], np.concatenate(chunks))
        bar.close()


def _run_here(model_dir, ids, texts, todo, kind, bf16, batch_size, progress, onnx_path, desc):
    """`_run_shards` in this process: the shard task's body with all of this machine's CPUs
    (as a local Ray start would give it); the caller's torch thread count is restored."""
    import torch

    threads = torch.get_num_threads()
    try:
        for name, rows in todo:
            chunks = []
            with tqdm(total=len(rows), desc=desc, unit="text", disable=not progress) as bar:
                for chunk in _encode_chunks(str(model_dir), [texts[i] for i in rows], kind,
                                            batch_size, bf16, os.cpu_count() or 1, onnx_path):
                    chunks.append(chunk)
                    bar.update(len(chunk))
            yield name, Embeddings(ids[rows], np.concatenate(chunks))
    finally:
        torch.set_num_threads(threads)


def _encode_chunks(model_dir: str, texts: list[str], kind: str, batch_size: int, bf16: bool,
                   threads: int, onnx_path: str | None = None):
    """Body of one shard task: encode `texts` (already in the encoder's order), yielding
    float32 chunks of whole batches so that the driver's progress bar moves."""
    import torch

    from hybrid.encoder import BiEncoder, EncoderTokenizer
    from hybrid.onnx_encoder import OnnxEncoder

    torch.set_num_threads(max(1, threads))
    if onnx_path is None:
        enc = BiEncoder.from_pretrained(model_dir)
    else:  # the driver's export (checked there): no re-hashing in every shard
        enc = OnnxEncoder(onnx_path, EncoderTokenizer.from_pretrained(model_dir), max(1, threads))
    device = "cuda" if torch.cuda.is_available() and onnx_path is None else None
    step = batch_size * 8
    for a in range(0, max(len(texts), 1), step):  # an empty shard yields one empty chunk
        yield enc.encode(texts[a:a + step], kind, batch_size=batch_size, bf16=bf16,
                         show_progress=False, device=device)


_TASK = None


def _shard_task():
    """The Ray remote (streaming generator) version of `_encode_chunks`, built on first
    use so that importing this module needs no Ray."""
    global _TASK
    if _TASK is None:
        import ray

        _TASK = ray.remote(_encode_chunks)
    return _TASK
