"""The parallel QA table: one row per (dataset, xling_id, lang).

| column | type | meaning |
| --- | --- | --- |
| dataset | string | source name (`xquad-r`, `mmarco`, a squad NAME, a table's own) |
| xling_id | string | id shared by the translations of one question within a dataset |
| lang | string | ISO 639-1 code (`hybrid.langs.validate_lang`) |
| question | string | non-empty |
| positive | string | non-empty: the answer sentence / relevant passage in `lang` |
| context | string, nullable | the paragraph the positive comes from |
| hard_negatives | list<string> | may be empty |

Monolingual and cross-lingual pairs are composed later by the sampler from rows sharing
(dataset, xling_id), so storage grows with ids x languages.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa

from hybrid.errors import HybridError
from hybrid.io import output_dir, write_json, write_parquet
from hybrid.langs import validate_lang
from hybrid.paths import validate_name

PAIRS_FILES = ("pairs.parquet", "pairs_meta.json")
PAIRS_COLUMNS = ["dataset", "xling_id", "lang", "question", "positive", "context", "hard_negatives"]
REQUIRED_COLUMNS = ["xling_id", "lang", "question", "positive"]
PAIRS_SCHEMA = pa.schema([
    pa.field("dataset", pa.string(), nullable=False),
    pa.field("xling_id", pa.string(), nullable=False),
    pa.field("lang", pa.string(), nullable=False),
    pa.field("question", pa.string(), nullable=False),
    pa.field("positive", pa.string(), nullable=False),
    pa.field("context", pa.string()),
    pa.field("hard_negatives", pa.list_(pa.string()), nullable=False),
])


def empty_pairs() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in PAIRS_COLUMNS})


def validate_pairs(df: pd.DataFrame, where: str) -> pd.DataFrame:
    """Check a table against the schema; return it with canonical columns and types.

    `dataset` must be present (sources fill it before calling). Errors name `where` and
    the 0-based row: a missing column, a non-string or empty id/question/positive, a bad
    language code, a non-string context, hard_negatives that are not a list of strings,
    a duplicate (dataset, xling_id, lang).
    """
    missing = [c for c in ["dataset", *REQUIRED_COLUMNS] if c not in df.columns]
    if missing:
        raise HybridError(f"{where}: missing column(s) {', '.join(missing)} "
                          f"(need {', '.join(REQUIRED_COLUMNS)}; optional context, hard_negatives)")
    extra = [c for c in df.columns if c not in PAIRS_COLUMNS]
    if extra:
        raise HybridError(f"{where}: unknown column(s) {', '.join(map(str, extra))}")
    df = df.reset_index(drop=True)
    context = df["context"] if "context" in df.columns else pd.Series([None] * len(df), dtype=object)
    negs = df["hard_negatives"] if "hard_negatives" in df.columns else pd.Series([[]] * len(df), dtype=object)
    rows = {c: [] for c in PAIRS_COLUMNS}
    for i, rec in enumerate(zip(df["dataset"], df["xling_id"], df["lang"], df["question"],
                                df["positive"], context, negs, strict=True)):
        for col, val in zip(PAIRS_COLUMNS[:5], rec[:5], strict=True):
            if not isinstance(val, str) or not val.strip():
                raise HybridError(f"{where}: row {i}: {col} must be a non-empty string, got {val!r}")
        validate_lang(rec[2], where=f"{where}: row {i}")
        ctx = rec[5]
        if ctx is not None and not (isinstance(ctx, float) and pd.isna(ctx)) and not isinstance(ctx, str):
            raise HybridError(f"{where}: row {i}: context must be a string or null, got {ctx!r}")
        hn = rec[6]
        if hn is None or (isinstance(hn, float) and pd.isna(hn)):
            hn = []
        if hasattr(hn, "tolist"):
            hn = hn.tolist()
        if not isinstance(hn, list) or not all(isinstance(x, str) for x in hn):
            raise HybridError(f"{where}: row {i}: hard_negatives must be a list of strings, got {hn!r}")
        for col, val in zip(PAIRS_COLUMNS, (*rec[:5], ctx if isinstance(ctx, str) else None, hn), strict=True):
            rows[col].append(val)
    for ds in sorted(set(rows["dataset"])):
        validate_name(ds, where=f"{where}: dataset")
    out = pd.DataFrame(rows, columns=PAIRS_COLUMNS)
    out["context"] = pd.Series(rows["context"], dtype=object)  # keep None (not NaN) for missing
    return check_unique(out, where)


def check_unique(df: pd.DataFrame, where: str) -> pd.DataFrame:
    """Raise on a repeated (dataset, xling_id, lang); return `df`."""
    dup = df.duplicated(["dataset", "xling_id", "lang"])
    if dup.any():
        i = int(dup.idxmax())
        key = tuple(str(x) for x in df.loc[i, ["dataset", "xling_id", "lang"]])
        raise HybridError(f"{where}: row {i}: duplicate (dataset, xling_id, lang) {key}")
    return df


def counts(df: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Rows per dataset and language."""
    out: dict[str, dict[str, int]] = {}
    for (ds, lang), n in df.groupby(["dataset", "lang"]).size().items():
        out.setdefault(ds, {})[lang] = int(n)
    return out


def write_pairs(df: pd.DataFrame, out_dir: str | Path, meta: dict) -> Path:
    """Write DIR/pairs.parquet and DIR/pairs_meta.json as one set, swapped in for DIR whole
    (`hybrid.io.output_dir`)."""
    out = Path(out_dir)
    df = df[PAIRS_COLUMNS]
    table = pa.Table.from_pandas(df, schema=PAIRS_SCHEMA, preserve_index=False)
    with output_dir(out, PAIRS_FILES) as tmp:
        write_parquet(tmp / "pairs.parquet", table)
        write_json(tmp / "pairs_meta.json", dict(meta, rows=len(df), rows_per_dataset_lang=counts(df)))
    return out / "pairs.parquet"


def load_pairs(path: str | Path) -> pd.DataFrame:
    """Read a pairs table (a directory holding pairs.parquet, or the file); validated.

    The whole table in memory, for small tables and tests: training and `hybrid batches`
    read it out of core (`hybrid.data.table.PairsTable`), and this goes through the same
    validation and cache. `hard_negatives` comes back as Python lists, `context` as str or None.
    """
    from hybrid.data.table import PairsTable

    return PairsTable.open(path).to_pandas()


def read_meta(path: str | Path) -> dict:
    p = Path(path)
    return json.loads(((p if p.is_dir() else p.parent) / "pairs_meta.json").read_text(encoding="utf-8"))
