"""mMARCO (Bonifacio et al. 2021) as a pairs source, read through `datasets`.

The source is a local directory or a Hub dataset id (e.g. `unicamp-dl/mmarco`, read as
`hf://datasets/unicamp-dl/mmarco`) in the repository's layout, where every language
shares the English query and passage ids:

    data/triples.train.ids.small.tsv                     qid  pos_pid  neg_pid
    data/google/queries/train/{name}_queries.train.tsv   qid  text
    data/google/collections/{name}_collection.tsv        pid  text

with {name} the language's English name (`english`, `german`, ...). Each file is streamed
with `datasets.load_dataset("csv", ..., streaming=True)`: the first `limit` distinct query
ids of the triples are taken (positive = their first triple's passage, up to `negatives`
distinct negatives), then each language's queries and collection are scanned for just
those ids. A (qid, lang) whose query or positive is missing is skipped with a counted
warning; a missing hard negative is dropped.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pandas as pd

from hybrid.data.pairs import PAIRS_COLUMNS, validate_pairs
from hybrid.errors import HybridError
from hybrid.paths import check_data_path

MMARCO_LANGS = {
    "ar": "arabic", "de": "german", "en": "english", "es": "spanish", "fr": "french",
    "hi": "hindi", "id": "indonesian", "it": "italian", "ja": "japanese", "nl": "dutch",
    "pt": "portuguese", "ru": "russian", "vi": "vietnamese", "zh": "chinese",
}
TRIPLES = "data/triples.train.ids.small.tsv"
QUERIES = "data/google/queries/train/{name}_queries.train.tsv"
COLLECTION = "data/google/collections/{name}_collection.tsv"
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def _root(location: str) -> tuple[str, bool]:
    if Path(location).is_dir():
        return str(check_data_path(location, what="--source mmarco:")), True
    if _HUB_ID.match(location):
        return f"hf://datasets/{location}", False
    raise HybridError(f"mmarco: {location!r} is neither a directory nor a Hub dataset id (owner/name)")


def _stream(root: str, rel: str, columns: list[str], local: bool):
    """Yield rows of one TSV file of the layout via `datasets` (streaming)."""
    from datasets import Features, Value, load_dataset

    path = f"{root}/{rel}"
    if local and not Path(path).is_file():
        raise HybridError(f"{path}: missing (mMARCO layout: {rel})")
    try:
        ds = load_dataset("csv", data_files=path, delimiter="\t", column_names=columns,
                          features=Features({c: Value("string") for c in columns}),
                          quoting=csv.QUOTE_NONE, split="train", streaming=True)
        yield from ds
    except HybridError:
        raise
    except Exception as exc:  # datasets/pandas/fsspec raise many types; keep one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
        raise HybridError(f"{path}: cannot read ({first})") from None


def _lookup(root, rel, wanted: set[str], local: bool) -> dict[str, str]:
    found: dict[str, str] = {}
    for row in _stream(root, rel, ["id", "text"], local):
        if row["id"] in wanted and row["text"]:
            found[row["id"]] = row["text"]
            if len(found) == len(wanted):
                break
    return found


def mmarco_source(spec):
    """Rows for `mmarco:DIR_OR_HUB_ID[?langs=..&limit=N&negatives=K]` (see module doc)."""
    from tqdm import tqdm

    langs = spec.langs() or list(MMARCO_LANGS)
    bad = [lang for lang in langs if lang not in MMARCO_LANGS]
    if bad:
        raise HybridError(f"--source {spec.text}: mMARCO has no {','.join(bad)} "
                          f"(has {','.join(MMARCO_LANGS)})")
    limit = spec.int_option("limit", 10000)
    k = spec.int_option("negatives", 0)
    if limit == 0:
        raise HybridError(f"--source {spec.text}: limit must be positive")
    root, local = _root(spec.location)
    order: list[str] = []
    pos: dict[str, str] = {}
    negs: dict[str, list[str]] = {}
    for row in _stream(root, TRIPLES, ["qid", "pos", "neg"], local):
        q = row["qid"]
        if q not in pos:
            if len(order) == limit:
                break
            order.append(q)
            pos[q], negs[q] = row["pos"], []
        if row["neg"] and len(negs[q]) < k and row["neg"] not in negs[q]:
            negs[q].append(row["neg"])
    if not order:
        raise HybridError(f"{root}/{TRIPLES}: no triples")
    pids = set(pos.values()) | {p for v in negs.values() for p in v}
    rows, skipped = [], {}
    for lang in tqdm(langs, desc="mmarco languages", disable=None):
        name = MMARCO_LANGS[lang]
        queries = _lookup(root, QUERIES.format(name=name), set(order), local)
        passages = _lookup(root, COLLECTION.format(name=name), pids, local)
        for q in order:
            if q not in queries or pos[q] not in passages:
                skipped[lang] = skipped.get(lang, 0) + 1
                continue
            rows.append(("mmarco", q, lang, queries[q], passages[pos[q]], None,
                         [passages[p] for p in negs[q] if p in passages]))
    if not rows:
        raise HybridError(f"{root}: no mMARCO query had its text and positive passage")
    warnings = [f"mmarco {lang}: skipped {n} query id(s) without query text or positive passage"
                for lang, n in skipped.items()]
    df = validate_pairs(pd.DataFrame(rows, columns=PAIRS_COLUMNS), f"mmarco {root}")
    files = {}
    if local:
        from hybrid.hashing import sha256_file

        rels = [TRIPLES] + [r.format(name=MMARCO_LANGS[lang]) for lang in langs for r in (QUERIES, COLLECTION)]
        files = {f"{root}/{r}": sha256_file(f"{root}/{r}") for r in rels}
    return df, {"files": files, "warnings": warnings, "query_ids": len(order)}
