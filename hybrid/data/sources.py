"""Sources of the parallel QA table and their spec strings (`hybrid data pairs --source`).

    xquad-r:[DIR|URL|upstream][?langs=en,de&hard_negatives=K]
        The XQuAD-R train split (by article; `--split-seed`, `--heldout-fraction`). Empty
        location: the offline copy if any, else the pinned upstream files.
    table:FILE[?dataset=NAME]
        A .jsonl or .parquet file already in the pairs schema (validated). `dataset` fills
        a missing dataset column (default: the file's stem).
    squad:NAME=DIR[?langs=..&hard_negatives=K]
        DIR holds {lang}.json SQuAD-format files sharing question ids (e.g. translate-train).
    mmarco:DIR_OR_HUB_ID[?langs=en,de&limit=N&negatives=K]
        mMARCO in its Hub layout, read with `datasets` (see hybrid.data.mmarco).

Every row's positive is the answer sentence (SQuAD/LAReQA: the sentence whose span
contains `answer_start`; without `sentences` the context is split by the rule in
hybrid.data.squad) or the relevant passage (mMARCO). `hard_negatives=K` adds up to K
other sentences of the same paragraph (default 0: the trainer uses in-batch negatives).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from hybrid.data.lareqa import Benchmark, article_names, read_lareqa
from hybrid.data.pairs import PAIRS_COLUMNS, check_unique, empty_pairs, validate_pairs
from hybrid.data.split import article_split
from hybrid.data.squad import read_squad
from hybrid.errors import HybridError
from hybrid.io import json_error, read_utf8
from hybrid.langs import validate_lang
from hybrid.paths import check_data_path, validate_name
from hybrid.redact import redact
from hybrid.spec import parse_options, split_spec

KINDS = ("xquad-r", "table", "squad", "mmarco")
OPTIONS = {
    "xquad-r": {"langs", "hard_negatives"},
    "table": {"dataset"},
    "squad": {"langs", "hard_negatives"},
    "mmarco": {"langs", "limit", "negatives"},
}


@dataclass
class SourceSpec:
    kind: str
    location: str
    name: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    text: str = ""

    def langs(self) -> list[str] | None:
        raw = self.options.get("langs")
        if raw is None:
            return None
        langs = [validate_lang(x.strip(), where=f"--source {self.text}") for x in raw.split(",") if x.strip()]
        if not langs:
            raise HybridError(f"--source {self.text}: empty langs")
        return langs

    def int_option(self, key: str, default: int) -> int:
        raw = self.options.get(key)
        if raw is None:
            return default
        try:
            val = int(raw)
        except ValueError:
            val = -1
        if val < 0:
            raise HybridError(f"--source {self.text}: {key} must be a non-negative integer, got {raw!r}")
        return val


def parse_source(text: str) -> SourceSpec:
    """Parse one `--source` spec (syntax in the module docstring)."""
    kind, rest, query = split_spec(text)
    if rest is None or kind not in KINDS:
        raise HybridError(f"--source {text!r}: expected KIND:LOCATION with KIND one of {', '.join(KINDS)}")
    options: dict[str, str] = {}
    if query is not None:
        try:
            options = parse_options(query, keep_blank=True)
        except ValueError:
            raise HybridError(f"--source {text!r}: bad options {query!r} (want key=value&...)") from None
        if "dataset" in options:
            validate_name(options["dataset"], where=f"--source {text!r}: dataset")
        unknown = set(options) - OPTIONS[kind]
        if unknown:
            raise HybridError(f"--source {text!r}: unknown option(s) {', '.join(sorted(unknown))} "
                              f"for {kind} (allowed: {', '.join(sorted(OPTIONS[kind]))})")
    name = None
    if kind == "squad":
        name, eq, rest = rest.partition("=")
        if not eq or not name or not rest:
            raise HybridError(f"--source {text!r}: expected squad:NAME=DIR")
        validate_name(name, where=f"--source {text!r}: dataset")
    if kind in ("table", "mmarco") and not rest:
        raise HybridError(f"--source {text!r}: missing location")
    return SourceSpec(kind, rest, name, options, text)


def _paragraph_negatives(sentences: list[str], pos: int, k: int) -> list[str]:
    if k <= 0:
        return []
    positive = sentences[pos]
    out = [s for i, s in enumerate(sentences) if i != pos and s.strip() and s != positive]
    return list(dict.fromkeys(out))[:k]


def benchmark_pairs(b: Benchmark, dataset: str, hard_negatives: int = 0) -> pd.DataFrame:
    """Pairs from a LAReQA benchmark: each question with its same-language answer sentence."""
    c = b.candidates
    lang_of = b.qrels["cid"].str.split("/", n=1).str[0]
    qlang = b.qrels["qid"].str.split("/", n=1).str[0]
    mono = b.qrels[lang_of == qlang]
    df = b.questions.merge(mono, on="qid").merge(c, on="cid", suffixes=("", "_c"))
    by_para = c.groupby(["lang", "context_id"])["sentence"].apply(list).to_dict()
    negs = [
        _paragraph_negatives(by_para[(lang, ctx)], pos, hard_negatives)
        for lang, ctx, pos in zip(df["lang"], df["context_id"], df["position"], strict=True)
    ]
    return pd.DataFrame({
        "dataset": dataset, "xling_id": df["xling_id"], "lang": df["lang"], "question": df["text"],
        "positive": df["sentence"], "context": df["context"], "hard_negatives": negs,
    }, columns=PAIRS_COLUMNS)


def xquad_r_source(spec: SourceSpec, split_seed: int, heldout_fraction: float):
    b = read_lareqa(spec.location or None, "xquad-r", spec.langs())
    train, heldout = article_split(b, heldout_fraction=heldout_fraction, seed=split_seed)
    df = benchmark_pairs(b.subset(articles=train), "xquad-r", spec.int_option("hard_negatives", 0))
    info = {
        "files": {v["path"]: v["sha256"] for v in b.meta["sources"].values()},
        "split": {"seed": split_seed, "heldout_fraction": heldout_fraction,
                  "train_articles": sorted(train), "heldout_articles": sorted(heldout)},
        "warnings": list(b.meta.get("warnings", [])),
    }
    return df, info


def _read_jsonl(path: Path) -> pd.DataFrame:
    import json

    _, text = read_utf8(path)
    records = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise HybridError(f"{path}: line {n}: malformed JSON ({json_error(exc, line=False)})") from None
        if not isinstance(rec, dict):
            raise HybridError(f"{path}: line {n}: not a JSON object")
        records.append(rec)
    return pd.DataFrame.from_records(records)


def table_source(spec: SourceSpec):
    path = check_data_path(spec.location, what=f"--source {spec.text}:")
    if not path.is_file():
        raise HybridError(f"{path}: no such file")
    from hybrid.hashing import sha256_file

    if path.suffix == ".parquet":
        try:
            df = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise HybridError(f"{path}: unreadable Parquet ({str(exc).splitlines()[0]})") from None
    elif path.suffix in (".jsonl", ".json"):
        df = _read_jsonl(path)
    else:
        raise HybridError(f"{path}: unsupported table format (use .jsonl or .parquet)")
    if df.empty:
        raise HybridError(f"{path}: no rows")
    if "dataset" not in df.columns:
        df = df.assign(dataset=spec.options.get("dataset") or path.stem)
    elif spec.options.get("dataset"):
        raise HybridError(f"{path}: has a dataset column; drop ?dataset= from --source")
    return validate_pairs(df, str(path)), {"files": {str(path): sha256_file(path)}, "warnings": []}


def squad_source(spec: SourceSpec):
    folder = check_data_path(spec.location, what=f"--source {spec.text}:")
    if not folder.is_dir():
        raise HybridError(f"{folder}: not a directory of {{lang}}.json files")
    paths = sorted(folder.glob("*.json"))
    if not paths:
        raise HybridError(f"{folder}: no .json files")
    wanted = spec.langs()
    files = {}
    for p in paths:
        lang = validate_lang(p.stem, where=str(p))
        if wanted is None or lang in wanted:
            files[lang] = read_squad(p, require_sentences=False)
    if wanted:
        missing = [lang for lang in wanted if lang not in files]
        if missing:
            raise HybridError(f"{folder}: missing {', '.join(f'{x}.json' for x in missing)}")
    ids = {lang: {qa.id for _, _, qa in f.qas()} for lang, f in files.items()}
    if len(files) > 1:
        for lang, got in ids.items():
            others = set().union(*(v for k, v in ids.items() if k != lang))
            if not got & others:
                raise HybridError(f"{files[lang].path}: parallel ids do not match: none of its "
                                  f"question ids appears in another language's file")
    article_names(files)  # raises when ids tie articles together inconsistently
    k = spec.int_option("hard_negatives", 0)
    rows, skipped, split = [], {}, 0
    for lang, f in files.items():
        for _, para, qa in f.qas():
            pos = para.answer_sentence(qa.answer_start)
            if pos is None:
                skipped[lang] = skipped.get(lang, 0) + 1
                continue
            split += para.split_by_rule
            rows.append((spec.name, qa.id, lang, qa.question, para.sentences[pos], para.context,
                         _paragraph_negatives(para.sentences, pos, k)))
    df = pd.DataFrame(rows, columns=PAIRS_COLUMNS) if rows else empty_pairs()
    if df.empty:
        raise HybridError(f"{folder}: no usable questions")
    from collections import Counter

    n_lang = Counter(qid for v in ids.values() for qid in v)
    single = sum(1 for n in n_lang.values() if n == 1)
    warnings = [f"{files[lang].path}: skipped {n} question(s) whose answer_start is in no sentence"
                for lang, n in skipped.items()]
    if single and len(files) > 1:
        warnings.append(f"{folder}: {single} question id(s) in only one language (kept; monolingual pairs only)")
    info = {"files": {str(f.path): f.sha256 for f in files.values()}, "warnings": warnings,
            "rows_positive_by_split_rule": split}
    return validate_pairs(df, str(folder)), info


def build_pairs(specs: list[str], split_seed: int = 0, heldout_fraction: float = 0.5):
    """Rows from every source, validated and de-duplicated; returns (DataFrame, meta)."""
    if not specs:
        raise HybridError("--source: give at least one source")
    parsed = [parse_source(s) for s in specs]
    frames, meta = [], {"sources": [], "warnings": []}
    for spec in parsed:
        if spec.kind == "xquad-r":
            df, info = xquad_r_source(spec, split_seed, heldout_fraction)
        elif spec.kind == "table":
            df, info = table_source(spec)
        elif spec.kind == "squad":
            df, info = squad_source(spec)
        else:
            from hybrid.data.mmarco import mmarco_source

            df, info = mmarco_source(spec)
        meta["warnings"] += info.pop("warnings", [])
        meta["sources"].append({"spec": redact(spec.text), "kind": spec.kind, "rows": len(df), **info})
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    df = check_unique(df, "--source " + " --source ".join(specs))
    return df, meta
