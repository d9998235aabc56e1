"""MIRACL (Zhang et al. 2023, arXiv 2210.09984): dev topics, qrels and corpus per language,
read through `datasets`, as `Collection`s for `hybrid.evaluation.ir`.

The files are those of the Hub repositories `miracl/miracl` (topics and qrels) and
`miracl/miracl-corpus` (passages), in their layout:

    miracl-v1.0-{lang}/topics/topics.miracl-v1.0-{lang}-dev.tsv    qid<TAB>query
    miracl-v1.0-{lang}/qrels/qrels.miracl-v1.0-{lang}-dev.tsv      qid<TAB>Q0<TAB>docid<TAB>relevance
    miracl-corpus-v1.0-{lang}/docs-*.jsonl.gz                      {"docid", "title", "text"}

`source` is "hub" (default: `hf://datasets/miracl/miracl` and `hf://datasets/miracl/
miracl-corpus`, downloaded and cached by `datasets`) or a local directory holding both
layouts side by side (a mirror of the two repositories' files). Topics and qrels are read
with `datasets.load_dataset("csv", ...)`; the corpus is streamed with
`datasets.load_dataset("json", ..., streaming=True)` and cut into chunks, so a corpus of
millions of passages is never held in memory. A passage is encoded as "title text".
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from hybrid.data.trec import Collection, chunked, doc_text
from hybrid.errors import HybridError
from hybrid.langs import validate_lang
from hybrid.paths import check_data_path

MIRACL_LANGS = ("ar", "bn", "de", "en", "es", "fa", "fi", "fr", "hi", "id", "ja", "ko", "ru",
                "sw", "te", "th", "yo", "zh")
#: Default: the MIRACL languages that are also XQuAD-R languages.
MIRACL_DEFAULT = ("ar", "de", "en", "es", "hi", "ru", "th", "zh")
HUB = ("hf://datasets/miracl/miracl", "hf://datasets/miracl/miracl-corpus")
TOPICS = "miracl-v1.0-{lang}/topics/topics.miracl-v1.0-{lang}-{split}.tsv"
QRELS = "miracl-v1.0-{lang}/qrels/qrels.miracl-v1.0-{lang}-{split}.tsv"
CORPUS = "miracl-corpus-v1.0-{lang}/docs-*.jsonl.gz"


def _roots(source) -> tuple[str, str, bool]:
    if source is None or str(source) == "hub":
        return HUB[0], HUB[1], False
    d = check_data_path(source, what="--source")
    if not d.is_dir():
        raise HybridError(f"--source: {d} is not a directory (or pass 'hub')")
    return str(d), str(d), True


def _one_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:200]


def _tsv(path: str, columns: list[str], local: bool) -> pd.DataFrame:
    from datasets import Features, Value, load_dataset

    if local and not Path(path).is_file():
        raise HybridError(f"{path}: missing (MIRACL layout)")
    try:
        ds = load_dataset("csv", data_files=path, delimiter="\t", column_names=columns,
                          features=Features({c: Value("string") for c in columns}),
                          quoting=csv.QUOTE_NONE, split="train")
    except Exception as exc:  # datasets/fsspec/pandas raise many types; keep one line
        raise HybridError(f"{path}: cannot read ({_one_line(exc)})") from None
    df = ds.to_pandas()
    if df.isna().any().any():
        raise HybridError(f"{path}: a line has fewer than {len(columns)} tab-separated fields")
    return df


def _corpus_rows(pattern: str, local: bool):
    from datasets import load_dataset

    if local and not list(Path(pattern).parent.glob(Path(pattern).name)):
        raise HybridError(f"{pattern}: no corpus files (MIRACL corpus layout)")
    try:
        ds = load_dataset("json", data_files=pattern, split="train", streaming=True)
        for row in ds:
            yield str(row["docid"]), doc_text(row.get("title"), row.get("text"))
    except HybridError:
        raise
    except Exception as exc:
        raise HybridError(f"{pattern}: cannot read ({_one_line(exc)})") from None


def read_miracl(source=None, languages=None, split: str = "dev") -> list[Collection]:
    """One `Collection` per language (ISO 639-1; default `MIRACL_DEFAULT`), named by it."""
    langs = list(MIRACL_DEFAULT if languages is None else languages)
    for x in langs:
        validate_lang(x, where="--languages")
        if x not in MIRACL_LANGS:
            raise HybridError(f"--languages: {x} is not a MIRACL language ({','.join(MIRACL_LANGS)})")
    topics_root, corpus_root, local = _roots(source)
    out = []
    for x in langs:
        tpath = f"{topics_root}/{TOPICS.format(lang=x, split=split)}"
        qpath = f"{topics_root}/{QRELS.format(lang=x, split=split)}"
        queries = _tsv(tpath, ["qid", "text"], local)
        qrels = _tsv(qpath, ["qid", "iter", "docid", "relevance"], local)
        try:
            qrels["relevance"] = qrels["relevance"].astype(int)
        except ValueError:
            raise HybridError(f"{qpath}: a relevance is not an integer") from None
        qrels = qrels[["qid", "docid", "relevance"]]
        if queries["qid"].duplicated().any():
            raise HybridError(f"{tpath}: duplicate query id")
        unknown = sorted(set(qrels["qid"]) - set(queries["qid"]))
        if unknown:
            raise HybridError(f"{qpath}: query {unknown[0]!r} is not in the topics")
        pattern = f"{corpus_root}/{CORPUS.format(lang=x)}"

        def chunks(size: int, pattern=pattern):
            return chunked(_corpus_rows(pattern, local), size)

        out.append(Collection(x, queries, qrels, chunks,
                              {"lang": x, "split": split, "topics": tpath, "qrels": qpath,
                               "corpus": pattern}))
    return out
