"""Per-language centering: a training-free transform of any model's embeddings.

A multilingual encoder puts a language-specific offset into every vector, which is what
makes a pooled (multilingual) search favour passages in the query's language. Centering
subtracts each language's mean embedding (one mean per kind, "query" and "passage": the
prefixes differ) and re-normalises:

    v' = (v - mean[kind][lang]) / |v - mean[kind][lang]|

The means are estimated once (`estimate`) on texts disjoint from every test split (a
pairs table's training side, or any unlabelled corpus with a language column) and stored
with the model as `centering.json` (`FILE`); `Centering.load(model_dir)` reads it back,
`None` when the model has none. Every encode path applies it through `apply`
(`hybrid.evaluation.encode.encode_texts`, so evaluation, bitext and index building;
`hybrid.index.searcher` for queries). Raw vectors do not depend on it, so the embedding
cache keys on the weights only (`centering.json` is left out of the model fingerprint).

Languages, explicitly:
- a language that has a mean: its mean;
- a language given but not estimated (unseen): the mean of all estimated languages'
  means (`GLOBAL`), never another language's;
- no language (None, e.g. a free-text query): the language whose mean is nearest to the
  vector (cosine); that is the language the offset points to.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hybrid.errors import HybridError
from hybrid.kinds import KINDS, check_kind

FILE = "centering.json"
GLOBAL = "*"  # the fallback for unseen languages: mean of the language means
VERSION = 1
log = logging.getLogger("hybrid.centering")


@dataclass
class Centering:
    """Means per kind and language: `means[kind][lang]` float32 [dim]; `counts` likewise
    (texts per mean); `source` says what they were estimated on."""

    means: dict[str, dict[str, np.ndarray]]
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        if set(self.means) != set(KINDS) or not all(self.means[k] for k in KINDS):
            raise HybridError(f"centering: needs means for both kinds {KINDS}, got "
                              f"{ {k: sorted(v) for k, v in self.means.items()} }")
        dims = {np.asarray(m).shape for ms in self.means.values() for m in ms.values()}
        if len(dims) != 1 or len(next(iter(dims))) != 1:
            raise HybridError(f"centering: means of different shapes {sorted(dims)}")
        self.means = {k: {lang: np.asarray(m, dtype=np.float32) for lang, m in ms.items()}
                      for k, ms in self.means.items()}

    @property
    def dim(self) -> int:
        return len(next(iter(self.means["query"].values())))

    def languages(self, kind: str = "passage") -> list[str]:
        return sorted(self.means[check_kind(kind)])

    def _table(self, kind: str) -> tuple[list[str], np.ndarray]:
        ms = self.means[check_kind(kind)]
        langs = sorted(ms)
        return langs, np.stack([ms[x] for x in langs])

    def resolve(self, vectors: np.ndarray, kind: str, langs: Sequence[str | None] | None) -> list[str]:
        """The mean each row is centered with: its language, `GLOBAL` for an unseen one,
        the nearest language mean for None (see the module doc)."""
        known, table = self._table(kind)
        n = len(vectors)
        given = [None] * n if langs is None else list(langs)
        if len(given) != n:
            raise ValueError(f"{len(given)} languages for {n} vectors")
        out: list[str] = []
        missing = [i for i, x in enumerate(given) if not x]
        nearest = {}
        if missing:
            unit = table / np.linalg.norm(table, axis=1, keepdims=True)
            best = np.argmax(np.asarray(vectors, dtype=np.float32)[missing] @ unit.T, axis=1)
            nearest = {i: known[int(j)] for i, j in zip(missing, best, strict=True)}
        unseen = set()
        for i, x in enumerate(given):
            if not x:
                out.append(nearest[i])
            elif x in self.means[kind]:
                out.append(x)
            else:
                unseen.add(x)
                out.append(GLOBAL)
        if unseen:
            log.warning("centering: no %s mean for %s: centered with the mean of all languages",
                        kind, ", ".join(sorted(unseen)))
        return out

    def apply(self, vectors: np.ndarray, kind: str, langs: Sequence[str | None] | None = None) -> np.ndarray:
        """Centered, unit-norm float32 copy of `vectors` [n, dim] (rows of kind `kind`;
        `langs`: one language per row, None entries or None for all: inferred)."""
        kind = check_kind(kind)
        v = np.asarray(vectors, dtype=np.float32)
        if v.ndim != 2 or v.shape[1] != self.dim:
            raise HybridError(f"centering: vectors of shape {v.shape}, means of dim {self.dim}")
        if len(v) == 0:
            return v.copy()
        means = dict(self.means[kind])
        means[GLOBAL] = np.mean(np.stack(list(self.means[kind].values())), axis=0)
        rows = self.resolve(v, kind, langs)
        codes = {x: i for i, x in enumerate(sorted(set(rows)))}
        table = np.stack([means[x] for x in sorted(codes)])
        out = v - table[np.fromiter((codes[x] for x in rows), dtype=np.int64, count=len(rows))]
        norm = np.linalg.norm(out, axis=1, keepdims=True)
        return (out / np.maximum(norm, 1e-12)).astype(np.float32)

    # ------------------------------------------------------------------ files
    def to_json(self) -> dict:
        return {"version": VERSION, "source": self.source, "dim": self.dim,
                "kinds": {k: {x: {"count": int(self.counts.get(k, {}).get(x, 0)),
                                  "mean": [float(f) for f in m]}
                              for x, m in sorted(self.means[k].items())} for k in KINDS}}

    def save(self, model_dir: str | Path) -> Path:
        """Write `model_dir/centering.json` (atomically)."""
        from hybrid.io import write_json

        return write_json(Path(model_dir) / FILE, self.to_json())

    @classmethod
    def load(cls, model_dir: str | Path) -> Centering | None:
        """The centering stored with a model, None when it has none; HybridError in one
        line for a damaged file."""
        p = Path(model_dir) / FILE
        if not p.is_file():
            return None
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
            if doc.get("version") != VERSION:
                raise ValueError(f"version {doc.get('version')!r}, expected {VERSION}")
            return cls({k: {x: np.asarray(e["mean"], dtype=np.float32) for x, e in doc["kinds"][k].items()}
                        for k in KINDS},
                       {k: {x: int(e["count"]) for x, e in doc["kinds"][k].items()} for k in KINDS},
                       str(doc.get("source", "")))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise HybridError(f"{p}: not a centering file ({exc})") from None


def centering_digest(model_dir: str | Path) -> str | None:
    """sha256 of the model's centering file, None when it has none (recorded by an index:
    its passages are only searched with queries centered the same way)."""
    from hybrid.hashing import sha256_file

    p = Path(model_dir) / FILE
    return sha256_file(p) if p.is_file() else None


def sample_per_language(langs: Sequence[str], limit: int, seed: int = 0) -> np.ndarray:
    """Row indices: at most `limit` rows of each language (a seeded random choice, in row
    order), so the estimate costs the same for a 10k- or 10M-row source."""
    langs = np.asarray(langs, dtype=object)
    rng = np.random.default_rng(seed)
    keep = []
    for x in sorted(set(langs.tolist())):
        rows = np.flatnonzero(langs == x)
        keep.append(rows if len(rows) <= limit else np.sort(rng.choice(rows, limit, replace=False)))
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)


def estimate(model, texts: dict[str, tuple[list[str], list[str]]], *, source: str = "",
             shards: int = 1, batch_size: int = 64, cache=None, progress: bool = True) -> Centering:
    """Means of `model`'s raw embeddings: `texts[kind] = (texts, langs)` for each kind,
    encoded with `hybrid.evaluation.encode.encode_texts` (cached, sharded)."""
    from hybrid.evaluation.encode import encode_texts

    means: dict[str, dict[str, np.ndarray]] = {}
    counts: dict[str, dict[str, int]] = {}
    for kind in KINDS:
        ts, ls = texts[kind]
        if not ts:
            raise HybridError(f"centering: no {kind} texts to estimate on")
        emb = encode_texts(model, [f"c{i}" for i in range(len(ts))], ts, kind, shards=shards,
                           batch_size=batch_size, cache=cache, progress=progress, center=False)
        ls = np.asarray(ls, dtype=object)
        means[kind] = {x: emb.vectors[ls == x].mean(axis=0) for x in sorted(set(ls.tolist()))}
        counts[kind] = {x: int((ls == x).sum()) for x in means[kind]}
    return Centering(means, counts, source)


def estimation_texts(data: str | Path, per_language: int = 512, seed: int = 0) -> dict:
    """`estimate`'s input from `data`: a pairs directory or file (`hybrid data pairs`:
    questions -> query, positives -> passage) or a Parquet / JSONL corpus with `text`
    and `lang` columns (each text used as both kinds); at most `per_language` texts per
    language and kind."""
    import pyarrow.parquet as pq

    from hybrid.langs import validate_lang

    p = Path(data)
    if p.is_dir():
        p = p / "pairs.parquet"
    if not p.is_file():
        raise HybridError(f"--data: {data} is neither a pairs directory nor a corpus file")
    if p.suffix in (".jsonl", ".json"):
        import pandas as pd

        try:
            t = pd.read_json(p, lines=True)
        except ValueError as exc:
            raise HybridError(f"--data: {p} is not JSON lines ({exc})") from None
        cols = {c: t[c].tolist() for c in t.columns if c in ("question", "positive", "text", "lang")}
    else:
        try:
            names = pq.read_schema(p).names
            t = pq.read_table(p, columns=[c for c in ("question", "positive", "text", "lang") if c in names])
        except Exception as exc:  # noqa: BLE001 - any unreadable file is one line
            raise HybridError(f"--data: {p} is not a Parquet file ({exc})") from None
        cols = {c: t.column(c).to_pylist() for c in t.column_names}
    if "lang" not in cols:
        raise HybridError(f"--data: {p} has no 'lang' column")
    langs = [v if isinstance(v, str) else "" for v in cols["lang"]]  # missing (None, NaN): skipped
    for x in sorted(set(langs) - {""}):
        validate_lang(x, where=f"--data {p.name}")
    if "question" in cols and "positive" in cols:
        kinds = {"query": cols["question"], "passage": cols["positive"]}
    elif "text" in cols:
        kinds = {"query": cols["text"], "passage": cols["text"]}
    else:
        raise HybridError(f"--data: {p} needs columns question + positive (a pairs table) or text")
    sample = [i for i in sample_per_language(langs, per_language, seed).tolist() if langs[i]]
    out = {}
    for kind, ts in kinds.items():
        rows = [i for i in sample if isinstance(ts[i], str) and ts[i].strip()]
        out[kind] = ([ts[i] for i in rows], [langs[i] for i in rows])
    return out


def center_model(model, data: str | Path, out: str | Path, *, per_language: int = 512,
                 seed: int = 0, shards: int = 1, batch_size: int = 64, cache=None,
                 progress: bool = True) -> Path:
    """Write `out`: the model `model` (any spec) with centering means estimated on `data`
    (`estimation_texts`). Its files are hard-linked where the filesystem allows (copied
    otherwise), a centering file it had is replaced; `out` appears whole or not at all."""
    import os
    import shutil

    from hybrid.io import check_output, output_dir
    from hybrid.model import resolve_model

    model_dir = Path(resolve_model(model))
    files = sorted(p.relative_to(model_dir) for p in model_dir.rglob("*")
                   if p.is_file() and p.name != FILE)
    names = {f.parts[0] for f in files} | {FILE}
    out = check_output(out, "dir", what="--out", names=names)
    if out.resolve() == model_dir.resolve():
        raise HybridError(f"--out {out}: is the model's own directory (write a new one)")
    texts = estimation_texts(data, per_language, seed)
    c = estimate(model_dir, texts, source=f"{Path(data).resolve()} (<= {per_language} texts per "
                 f"language and kind, seed {seed})", shards=shards, batch_size=batch_size,
                 cache=cache, progress=progress)
    with output_dir(out, names) as tmp:
        for f in files:
            (tmp / f).parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(model_dir / f, tmp / f)
            except OSError:
                shutil.copy2(model_dir / f, tmp / f)
        c.save(tmp)
    return out
