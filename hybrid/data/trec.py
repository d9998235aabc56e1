"""Ad-hoc retrieval collections (beir-style plain tables) and the TREC-style directory.

A `Collection` is what `hybrid.evaluation.ir.evaluate_ir` needs:
- `queries`: DataFrame qid, text;
- `qrels`: DataFrame qid, docid, relevance (int; > 0 means relevant, 0 judged not relevant);
- `corpus_chunks(size)`: a function returning an iterator of DataFrames (docid, text) of at
  most `size` rows each, so a corpus of millions of passages is streamed, never held whole.

`read_trec_dir(DIR)` reads a collection from its files:

    DIR/queries.tsv    qid<TAB>text, one query per line, no header
    DIR/corpus.jsonl   one JSON object per line: "_id" (or "docid"), "text", optional "title"
    DIR/qrels.txt      TREC qrels: "qid 0 docid relevance" (whitespace-separated)

A document's text is `title + " " + text` when it has a non-empty title. Queries without a
relevant document in the qrels are kept in the table; the evaluation skips and counts them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from hybrid.errors import HybridError
from hybrid.io import iter_jsonl, iter_lines
from hybrid.paths import check_data_path

CorpusChunks = Callable[[int], Iterator[pd.DataFrame]]


@dataclass
class Collection:
    name: str
    queries: pd.DataFrame  # qid, text
    qrels: pd.DataFrame  # qid, docid, relevance
    corpus_chunks: CorpusChunks
    meta: dict = field(default_factory=dict)


def doc_text(title, text) -> str:
    """The text a document is encoded as: "title text" (title left out when empty)."""
    title = (title or "").strip()
    text = (text or "").strip()
    return f"{title} {text}" if title else text


def chunked(rows: Iterator[tuple[str, str]], size: int) -> Iterator[pd.DataFrame]:
    """(docid, text) rows in DataFrames of at most `size` rows."""
    if size < 1:
        raise HybridError(f"--chunk-size: must be at least 1, not {size}")
    buf: list[tuple[str, str]] = []
    for row in rows:
        buf.append(row)
        if len(buf) == size:
            yield pd.DataFrame(buf, columns=["docid", "text"])
            buf = []
    if buf:
        yield pd.DataFrame(buf, columns=["docid", "text"])


def read_queries_tsv(path) -> pd.DataFrame:
    p = Path(path)
    if not p.is_file():
        raise HybridError(f"{p}: missing (expected qid<TAB>text lines)")
    rows = []
    for n, line in iter_lines(p):
        parts = line.split("\t", 1)
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            raise HybridError(f"{p}:{n}: expected 'qid<TAB>text'")
        rows.append((parts[0].strip(), parts[1].strip()))
    if not rows:
        raise HybridError(f"{p}: empty file")
    df = pd.DataFrame(rows, columns=["qid", "text"])
    if df["qid"].duplicated().any():
        raise HybridError(f"{p}: duplicate query id {df.loc[df['qid'].duplicated(), 'qid'].iloc[0]!r}")
    return df


def _jsonl_docs(path: Path) -> Iterator[tuple[str, str]]:
    for n, obj in iter_jsonl(path):
        docid = obj.get("_id", obj.get("docid")) if isinstance(obj, dict) else None
        if docid is None or not isinstance(obj.get("text"), str):
            raise HybridError(f"{path}:{n}: expected an object with '_id' (or 'docid') and 'text'")
        yield str(docid), doc_text(obj.get("title"), obj["text"])


def read_trec_dir(source) -> Collection:
    """The collection in `source` (layout in the module docstring)."""
    from hybrid.evaluation.trec import read_qrels

    d = check_data_path(source, what="--source")
    if not d.is_dir():
        raise HybridError(f"--source: {d} is not a directory")
    corpus = d / "corpus.jsonl"
    if not corpus.is_file():
        raise HybridError(f"{corpus}: missing (one JSON object per line: _id, title, text)")
    queries = read_queries_tsv(d / "queries.tsv")
    qrels = read_qrels(d / "qrels.txt")
    unknown = sorted(set(qrels["qid"]) - set(queries["qid"]))
    if unknown:
        raise HybridError(f"{d / 'qrels.txt'}: query {unknown[0]!r} is not in queries.tsv")

    def chunks(size: int) -> Iterator[pd.DataFrame]:
        return chunked(_jsonl_docs(corpus), size)

    return Collection(d.name, queries, qrels, chunks, {"source": str(d)})
