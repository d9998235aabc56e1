"""A user's corpus, read as a stream of batches: JSONL, Parquet or TSV with id, text, lang.

    for batch in read_corpus("passages.jsonl", batch_size=100_000):
        batch.ids, batch.texts, batch.langs          # lists, at most batch_size rows

Formats, by the file's suffix:
- `.jsonl` / `.ndjson`: one object per line with "id" and "text" (and optionally "lang");
  blank lines are skipped; an id may be a string or an integer.
- `.parquet`: columns `id`, `text` (and optionally `lang`), read with pyarrow row group by
  row group (`iter_batches`).
- `.tsv` / `.tab`: tab-separated `id<TAB>text[<TAB>lang]`; a first line that reads exactly
  `id<TAB>text[<TAB>lang]` is a header and skipped. A text may not hold a tab.

Memory: one batch of texts at a time, plus one entry per id seen so far (a dict id -> line
number, ~100 bytes per id: how duplicate ids are caught in one pass without sorting; for
1M passages ~100 MB, the index's own vectors take 1.5 GB). Every refusal is one
`HybridError` naming the file and the line (Parquet: the row, 1-based): an empty id, an
empty or blank text, a duplicate id (with the line of its first use), an unknown language
code, a missing column, a line that is not JSON or not an object. An empty `lang` is "no
language" (None).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from hybrid.errors import HybridError
from hybrid.hashing import sha256_file
from hybrid.langs import validate_lang

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".tsv": "tsv",
           ".tab": "tsv"}


@dataclass
class Batch:
    """Rows of the corpus in file order: ids and texts (str), langs (str or None)."""

    ids: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    langs: list[str | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)


def corpus_format(path: str | os.PathLike) -> str:
    """"jsonl", "parquet" or "tsv" from the suffix of `path` (else HybridError)."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise HybridError(f"--corpus {path}: unknown format (expected .jsonl, .parquet or .tsv)")
    return fmt


file_sha256 = sha256_file  # the corpus hash in an index manifest (hybrid.hashing)


def read_corpus(path: str | os.PathLike, batch_size: int = 100_000) -> Iterator[Batch]:
    """Yield the corpus in batches of at most `batch_size` checked rows (see the module
    docstring); the whole file is checked by the time the last batch is yielded."""
    p = Path(path)
    if not p.is_file():
        raise HybridError(f"--corpus {p}: not a file")
    if int(batch_size) < 1:
        raise HybridError(f"--chunk-size: must be at least 1, not {batch_size}")
    rows = {"jsonl": _jsonl_rows, "parquet": _parquet_rows, "tsv": _tsv_rows}[corpus_format(p)](p)
    seen: dict[str, int] = {}
    batch = Batch()
    for line, rid, text, lang in rows:
        where = f"{p}:{line}"
        rid = "" if rid is None else str(rid)
        if not rid.strip():
            raise HybridError(f"{where}: empty id")
        if rid in seen:
            raise HybridError(f"{where}: duplicate id {rid!r} (first at line {seen[rid]})")
        seen[rid] = line
        if not isinstance(text, str) or not text.strip():
            raise HybridError(f"{where}: empty text (id {rid!r})")
        lang = lang.strip() if isinstance(lang, str) else lang
        if lang is not None and lang != "":
            lang = validate_lang(lang, where=where)
        batch.ids.append(rid)
        batch.texts.append(text)
        batch.langs.append(lang or None)
        if len(batch) >= batch_size:
            yield batch
            batch = Batch()
    if not seen:
        raise HybridError(f"--corpus {p}: no passages")
    if len(batch):
        yield batch


def _jsonl_rows(p: Path):
    from hybrid.io import iter_jsonl

    for n, obj in iter_jsonl(p):
        if not isinstance(obj, dict):
            raise HybridError(f"{p}:{n}: expected a JSON object with id and text")
        for key in ("id", "text"):
            if key not in obj:
                raise HybridError(f"{p}:{n}: no {key!r} field")
        rid = obj["id"]
        if isinstance(rid, bool) or not isinstance(rid, (str, int)):
            raise HybridError(f"{p}:{n}: id must be a string or an integer")
        lang = obj.get("lang")
        if lang is not None and not isinstance(lang, str):
            raise HybridError(f"{p}:{n}: lang must be a string")
        yield n, rid, obj["text"], lang


def _parquet_rows(p: Path):
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(p)
    except Exception as exc:  # noqa: BLE001 - pyarrow's many error types: one line
        raise HybridError(f"{p}: not a readable Parquet file ({exc})") from None
    names = pf.schema_arrow.names
    for key in ("id", "text"):
        if key not in names:
            raise HybridError(f"{p}: no {key!r} column (has {', '.join(names)})")
    cols = ["id", "text"] + (["lang"] if "lang" in names else [])
    n = 0
    for rb in pf.iter_batches(batch_size=10_000, columns=cols):
        d = rb.to_pydict()
        langs = d.get("lang") or [None] * rb.num_rows
        for rid, text, lang in zip(d["id"], d["text"], langs, strict=True):
            n += 1
            yield n, rid, text, lang


def _tsv_rows(p: Path):
    try:
        with open(p, encoding="utf-8", newline="") as fh:
            for n, raw in enumerate(fh, 1):
                line = raw.rstrip("\r\n")
                if not line.strip():
                    continue
                parts = line.split("\t")
                if n == 1 and parts in (["id", "text"], ["id", "text", "lang"]):
                    continue
                if len(parts) not in (2, 3):
                    raise HybridError(f"{p}:{n}: expected id<TAB>text[<TAB>lang], found "
                                      f"{len(parts)} fields")
                yield n, parts[0], parts[1], parts[2] if len(parts) == 3 else None
    except UnicodeDecodeError as exc:
        raise HybridError(f"{p}: not UTF-8 text (byte {exc.start})") from None
