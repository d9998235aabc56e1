"""TREC run and qrels files: any evaluation's ranking in the format trec_eval, ir_measures
and pytrec_eval read.

- run:   `qid Q0 docid rank score tag`, one line per retrieved item, best first;
- qrels: `qid 0 docid relevance`, one line per judgement (relevance 0 = judged not
  relevant).
Ids must not contain whitespace (HybridError otherwise). Tables use the columns of
`DenseIndex.search` (qid, rank, cid or docid, score) and of the qrels (qid, cid or docid,
relevance; a missing relevance column means 1). Files are written atomically.

`write_trec(out, run, qrels, tag)` writes both as `out/run.trec` and `out/qrels.trec`.
Note that trec_eval orders a run by score, breaking ties by docid, while this tool's
metrics rank ties pessimistically (`hybrid.evaluation.metrics`): on a run without tied
scores the two agree exactly (tested against ir_measures).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from hybrid.errors import HybridError
from hybrid.io import iter_lines, write_text


def _doc_column(df: pd.DataFrame) -> str:
    for c in ("docid", "cid"):
        if c in df.columns:
            return c
    raise ValueError(f"expected a docid or cid column, got {list(df.columns)}")


def _check_ids(values, what: str) -> None:
    s = pd.Series(values, dtype=str)
    bad = s[s.str.contains(r"\s", regex=True) | (s == "")]
    if len(bad):
        raise HybridError(f"TREC {what}: id {bad.iloc[0]!r} is empty or contains whitespace")


def format_run(run: pd.DataFrame, tag: str = "hybrid") -> str:
    doc = _doc_column(run)
    _check_ids(run["qid"], "run")
    _check_ids(run[doc], "run")
    if not tag or any(ch.isspace() for ch in tag):
        raise HybridError(f"TREC run: tag {tag!r} is empty or contains whitespace")
    scores = np.asarray(run["score"], dtype=np.float64)
    lines = [f"{q} Q0 {d} {int(r)} {s:.7g} {tag}" for q, d, r, s in
             zip(run["qid"].astype(str), run[doc].astype(str), run["rank"], scores, strict=True)]
    return "\n".join(lines) + ("\n" if lines else "")


def format_qrels(qrels: pd.DataFrame) -> str:
    doc = _doc_column(qrels)
    _check_ids(qrels["qid"], "qrels")
    _check_ids(qrels[doc], "qrels")
    rel = qrels["relevance"] if "relevance" in qrels.columns else pd.Series(1, index=qrels.index)
    lines = [f"{q} 0 {d} {int(r)}" for q, d, r in
             zip(qrels["qid"].astype(str), qrels[doc].astype(str), rel, strict=True)]
    return "\n".join(lines) + ("\n" if lines else "")


def write_run(run: pd.DataFrame, path, tag: str = "hybrid") -> Path:
    """Write a run table as a TREC run file."""
    return write_text(path, format_run(run, tag))


def write_qrels(qrels: pd.DataFrame, path) -> Path:
    """Write a qrels table as a TREC qrels file."""
    return write_text(path, format_qrels(qrels))


def write_trec(out, run: pd.DataFrame, qrels: pd.DataFrame, tag: str = "hybrid") -> None:
    """`out/run.trec` and `out/qrels.trec`."""
    write_run(run, Path(out) / "run.trec", tag=tag)
    write_qrels(qrels, Path(out) / "qrels.trec")


def _records(p: Path, layout: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each non-blank line of a TREC file whose lines are `layout`
    (whitespace-separated fields); HybridError naming the line for any other field count."""
    width = len(layout.split())
    for n, line in iter_lines(p):
        f = line.split()
        if len(f) != width:
            raise HybridError(f"{p}:{n}: expected '{layout}', got {len(f)} fields")
        yield n, f


def read_qrels(path) -> pd.DataFrame:
    """A TREC qrels file (`qid iter docid relevance`, whitespace-separated) as a table
    qid, docid, relevance (int). Malformed lines and repeated (qid, docid) are errors."""
    p = Path(path)
    if not p.is_file():
        raise HybridError(f"{p}: missing")
    rows = []
    for n, f in _records(p, "qid 0 docid relevance"):
        try:
            rel = int(f[3])
        except ValueError:
            raise HybridError(f"{p}:{n}: relevance {f[3]!r} is not an integer") from None
        rows.append((f[0], f[2], rel))
    if not rows:
        raise HybridError(f"{p}: empty file")
    df = pd.DataFrame(rows, columns=["qid", "docid", "relevance"])
    dup = df.duplicated(["qid", "docid"])
    if dup.any():
        r = df[dup].iloc[0]
        raise HybridError(f"{p}: repeated judgement for query {r.qid!r} document {r.docid!r}")
    return df


def read_run(path) -> pd.DataFrame:
    """A TREC run file as a table qid, docid, rank, score, tag."""
    p = Path(path)
    rows = [(f[0], f[2], int(f[3]), float(f[4]), f[5])
            for _, f in _records(p, "qid Q0 docid rank score tag")]
    return pd.DataFrame(rows, columns=["qid", "docid", "rank", "score", "tag"])
