"""Choose the interpolation weight of `hybrid.model.merge` on held-out training ids.

The validation set is built from a pairs table (`hybrid data pairs`, a directory with
pairs.parquet) and holds only its *validation ids*: per dataset the `val_ids` xling_ids
that training holds out (`hybrid.train.data.split_validation`, the same blake2b rule, so
the same ids whatever the seed). The pairs table is built from the benchmarks' training
split only, so neither the ids trained on nor the benchmark's held-out test articles are
ever scored: the weight is chosen without looking at the test split.

For each id and language of the table the validation set has the question (a query) and
its positive (the answer text, a candidate; equal texts of one language and dataset are one
candidate). Two settings, as LAReQA's (`hybrid.evaluation.settings`):
- mono: per dataset and language, that language's questions against that language's
  answers (relevant: the answer of the same id); mAP averaged over (dataset, language);
- pooled: per dataset and query language, the questions against the answers of every
  language (relevant: the answers of the same id in every language, the parallel ones);
  mAP averaged over (dataset, query language).
mAP is exact (`hybrid.evaluation.metrics`: every relevant item's rank, ties pessimistic).
A weight's score is the mean of mono and pooled mAP (`select="mean"`), or one of them
(`select="mono"` / `"pooled"`). The best score wins; ties go to the smaller weight (closer
to A).

`val_ids` defaults to the training's own: the `data.val_ids` recorded in the
`train_summary.json` beside A's (and B's, and a base's) model directory (the smallest, whose
held-out ids every training held out), else the config default 160.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hybrid.errors import HybridError
from hybrid.model.merge import ModelPair, check_weight
from hybrid.train.config import DataArgs

DEFAULT_WEIGHTS = tuple(i / 10 for i in range(11))
DEFAULT_VAL_IDS = DataArgs().val_ids  # the config's default data.val_ids (one home)
SELECT = ("mean", "mono", "pooled")


@dataclass
class ValidationSet:
    """Queries and candidates of the validation ids. `ids`: the (dataset, xling_id) held
    out, sorted; `queries`: (dataset, xling_id, lang, question) per query; `candidates`:
    (dataset, lang, text) per distinct candidate; `answers[(dataset, xling_id, lang)]`:
    the candidate index of that row's positive."""

    ids: list[tuple[str, str]]
    queries: list[tuple[str, str, str, str]]
    candidates: list[tuple[str, str, str]]
    answers: dict[tuple[str, str, str], int]
    val_ids: int
    source: str

    @property
    def languages(self) -> list[str]:
        return sorted({q[2] for q in self.queries})

    def groups(self) -> dict[str, list[tuple[np.ndarray, np.ndarray, list[np.ndarray]]]]:
        """{"mono"|"pooled": [(query rows, pool rows, relevant pool positions per query)]},
        one entry per (dataset, language) pool / (dataset, query language)."""
        by_ds: dict[str, list[int]] = {}
        for i, q in enumerate(self.queries):
            by_ds.setdefault(q[0], []).append(i)
        langs_of: dict[tuple[str, str], list[str]] = {}
        for (ds, xid, lang) in self.answers:
            langs_of.setdefault((ds, xid), []).append(lang)
        out: dict[str, list] = {"mono": [], "pooled": []}
        for ds, qrows in sorted(by_ds.items()):
            pool_all = [c for c, cand in enumerate(self.candidates) if cand[0] == ds]
            for lang in sorted({self.queries[i][2] for i in qrows}):
                qs = [i for i in qrows if self.queries[i][2] == lang]
                pool = [c for c in pool_all if self.candidates[c][1] == lang]
                out["mono"].append(self._group(qs, pool, None))
                out["pooled"].append(self._group(qs, pool_all, langs_of))
        return out

    def _group(self, qs: list[int], pool: list[int], langs_of: dict | None):
        """(queries, pool, relevant): the answer of each query's id in its own language
        (`langs_of` None, mono) or in every language of the id (pooled)."""
        where = {c: j for j, c in enumerate(pool)}
        rel = []
        for i in qs:
            ds, xid, lang, _ = self.queries[i]
            langs = [lang] if langs_of is None else langs_of[(ds, xid)]
            rel.append(np.array(sorted({where[self.answers[(ds, xid, x)]] for x in langs}),
                                dtype=np.int64))
        return np.array(qs, dtype=np.int64), np.array(pool, dtype=np.int64), rel


def validation_set(pairs: str | os.PathLike, val_ids: int = DEFAULT_VAL_IDS) -> ValidationSet:
    """The validation set of the pairs table `pairs` (directory or pairs.parquet): the
    questions and answers of its `val_ids` held-out ids per dataset, nothing else (see the
    module docstring)."""
    from hybrid.data.table import PairsTable
    from hybrid.train.data import split_validation

    if int(val_ids) < 1:
        raise HybridError(f"--val-ids: must be at least 1, not {val_ids} (the weight is chosen "
                          "on held-out ids only)")
    table = PairsTable.open(pairs)
    _, val = split_validation(table, int(val_ids))
    ids, keys, rows = [], [], []
    for d, ds in enumerate(val.datasets):
        for code in val.ids_of(d):
            xid = val.name(code)
            ids.append((ds, xid))
            s, e = int(val.id_ptr[code]), int(val.id_ptr[code + 1])
            for j in range(s, e):
                keys.append((ds, xid, val.langs[int(val.id_lang[j])]))
                rows.append(int(val.id_row[j]))
    questions = table.texts(rows, "question")
    positives = table.texts(rows, "positive")
    candidates: list[tuple[str, str, str]] = []
    seen: dict[tuple[str, str, str], int] = {}
    answers = {}
    for key, pos in zip(keys, positives, strict=True):
        cand = (key[0], key[2], pos)
        if cand not in seen:
            seen[cand] = len(candidates)
            candidates.append(cand)
        answers[key] = seen[cand]
    queries = [(k[0], k[1], k[2], q) for k, q in zip(keys, questions, strict=True)]
    return ValidationSet(sorted(ids), queries, candidates, answers, int(val_ids), str(pairs))


def setting_map(q: np.ndarray, c: np.ndarray, groups) -> float:
    """Macro mean over `groups` of each group's mAP (`hybrid.evaluation.metrics`), for query
    vectors `q` and candidate vectors `c`."""
    from hybrid.evaluation.metrics import mean_metrics, ranks_from_scores

    maps = []
    for qs, pool, rel in groups:
        scores = q[qs] @ c[pool].T
        width = max(len(r) for r in rel)
        ranks = np.full((len(qs), width), np.nan)
        for i, r in enumerate(rel):
            mask = np.zeros(len(pool), dtype=bool)
            mask[r] = True
            ranks[i, :len(r)] = ranks_from_scores(scores[i], mask)
        maps.append(mean_metrics(ranks)["map"])
    return float(np.mean(maps))


@dataclass
class Selection:
    """The per-weight table (`rows`: weight, mono, pooled, score) and the chosen `weight`.
    `to_json()` is the record merge.json keeps (`selection`); `sel[key]` reads it too
    (`sel["weight"]`, `sel["table"]`)."""

    rows: list[dict]
    weight: float
    select: str
    val_ids: int
    pairs: str
    queries: int
    candidates: int
    languages: list[str]
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"weight": self.weight, "select": self.select, "score": SCORE_DOC[self.select],
                "pairs": self.pairs, "val_ids": self.val_ids, "queries": self.queries,
                "candidates": self.candidates, "languages": self.languages,
                "table": self.rows, "warnings": self.warnings}

    def __getitem__(self, key: str):
        return self.to_json()[key]

    def table(self) -> str:
        """The table as aligned text, the chosen weight marked."""
        lines = [f"{'weight':>6}  {'mono mAP':>8}  {'pooled mAP':>10}  {'score':>6}"]
        for r in self.rows:
            mark = "  <- chosen" if r["weight"] == self.weight else ""
            lines.append(f"{r['weight']:>6.3g}  {r['mono']:>8.4f}  {r['pooled']:>10.4f}  "
                         f"{r['score']:>6.4f}{mark}")
        return "\n".join(lines)


SCORE_DOC = {"mean": "(mono mAP + pooled mAP) / 2", "mono": "mono mAP", "pooled": "pooled mAP"}


def parse_weights(text: str | Sequence[float]) -> list[float]:
    """Weights from "0,0.25,0.5" (or a sequence): each in [0, 1], sorted, distinct."""
    items = text.split(",") if isinstance(text, str) else list(text)
    items = [x.strip() if isinstance(x, str) else x for x in items]
    if not items or any(x == "" for x in items):
        raise HybridError(f"--weights: expected numbers in [0, 1] separated by commas, not {text!r}")
    return sorted({check_weight(x, "--weights") for x in items})


def _recorded_training(model_dir: Path) -> dict | None:
    """The `data` section of the training that wrote `model_dir` (`<out>/model` beside
    `<out>/train_summary.json`), None when there is none."""
    p = model_dir.parent / "train_summary.json"
    if model_dir.name != "model" or not p.is_file():
        return None
    try:
        data = json.loads(p.read_text(encoding="utf-8"))["config"]["data"]
        return data if isinstance(data, dict) and isinstance(data.get("val_ids"), int) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _pairs_file(p: str | os.PathLike) -> Path:
    q = Path(p).expanduser()
    return (q / "pairs.parquet" if q.is_dir() or not q.suffix else q).resolve()


def choose_val_ids(dirs: Sequence[Path], pairs: str | os.PathLike, val_ids: int | None,
                   specs: Sequence[str] = ("A", "B")) -> tuple[int, list[str]]:
    """(val_ids, warnings): `val_ids`, or the smallest recorded by the trainings of `dirs`,
    or `DEFAULT_VAL_IDS`; a warning when it exceeds a training's (ids that model trained on
    would be scored) or a training used another pairs table."""
    warnings = []
    recorded = {}
    for spec, d in zip(specs, dirs, strict=True):
        data = _recorded_training(Path(d))
        if data is None:
            continue
        recorded[spec] = int(data["val_ids"])
        if data.get("pairs") and _pairs_file(data["pairs"]) != _pairs_file(pairs):
            warnings.append(f"{spec} was trained on {data['pairs']}, not {pairs}: its held-out "
                            "ids may differ from this table's")
    if val_ids is None:
        if recorded and min(recorded.values()) == 0:
            spec = min(recorded, key=recorded.get)
            raise HybridError(f"--val-ids: {spec} was trained with data.val_ids=0 (no ids held "
                              "out); pass --val-ids to score ids it trained on, or --weight")
        val_ids = min(recorded.values()) if recorded else DEFAULT_VAL_IDS
    for spec, n in recorded.items():
        if val_ids > n:
            warnings.append(f"--val-ids {val_ids} > the {n} ids {spec}'s training held out: "
                            f"{val_ids - n} validation ids per dataset were trained on by {spec}")
    return int(val_ids), warnings


def select_weight(a: str | os.PathLike, b: str | os.PathLike, pairs: str | os.PathLike,
                  weights: Sequence[float] = DEFAULT_WEIGHTS, val_ids: int | None = None, *,
                  select: str = "mean", batch_size: int = 64, device: str | None = None,
                  on_weight: Callable[[dict], None] | None = None,
                  pair: ModelPair | None = None,
                  base: str | os.PathLike | None = None) -> Selection:
    """Score the merges of `a` and `b` (with `base`: A + weight * (B - base)) at each of
    `weights` on the validation ids of the pairs table `pairs` (module docstring) and pick
    the best. Each merged model is encoded in memory (nothing written). `on_weight(row)` is
    called after each weight; `pair`: the models already loaded (`ModelPair.open`)."""
    import torch

    if select not in SELECT:
        raise HybridError(f"--select: must be one of {', '.join(SELECT)}, not {select!r}")
    if int(batch_size) < 1:
        raise HybridError(f"--batch-size: must be at least 1, not {batch_size}")
    ws = parse_weights(weights)
    pair = pair or ModelPair.open(a, b, base)
    n, warnings = choose_val_ids(pair.inputs, pairs, val_ids, pair.input_specs)
    vs = validation_set(pairs, n)
    groups = vs.groups()
    device = device or ("cuda" if torch.cuda.is_available() else None)
    q_texts = [q[3] for q in vs.queries]
    c_texts = [c[2] for c in vs.candidates]
    rows = []
    for w in ws:
        enc = pair.load(w)
        q = enc.encode(q_texts, "query", batch_size=batch_size, show_progress=False, device=device)
        c = enc.encode(c_texts, "passage", batch_size=batch_size, show_progress=False, device=device)
        mono, pooled = setting_map(q, c, groups["mono"]), setting_map(q, c, groups["pooled"])
        score = {"mean": (mono + pooled) / 2, "mono": mono, "pooled": pooled}[select]
        row = {"weight": w, "mono": round(mono, 6), "pooled": round(pooled, 6),
               "score": round(score, 6)}
        rows.append(row)
        if on_weight is not None:
            on_weight(row)
    best = max(rows, key=lambda r: (r["score"], -r["weight"]))["weight"]
    return Selection(rows, best, select, n, str(Path(pairs).resolve()), len(vs.queries), len(vs.candidates),
                     vs.languages, warnings + list(pair.warnings))


__all__ = ["select_weight", "validation_set", "ValidationSet", "Selection", "parse_weights",
           "setting_map", "choose_val_ids", "DEFAULT_WEIGHTS"]
