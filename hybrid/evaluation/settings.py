"""The LAReQA evaluation settings: which questions are ranked against which pool.

For languages L (in the order given):
- mono  X-X:     questions in X, pool = the candidates in X;
- cross X-Y:     questions in X, pool = the candidates in Y != X;
- multi X-multi: questions in X, pool = the candidates of every language in L.
That is |L| + |L|(|L|-1) + |L| settings: 11 + 110 + 11 = 132 for XQuAD-R, 7 + 42 + 7 = 56
for MLQA-R. A setting's key is "{query_lang}-{pool_lang}" ("de-en", "de-multi").

A question joins a setting only if its xling_id has a relevant answer in the pool (the
relevant items are the answer sentences of the question's xling_id, one per language; a
single-language pool keeps those in its language). XQuAD-R is fully parallel, so nothing is
skipped; MLQA-R ids exist in 2 to 4 languages, so most cross settings skip questions, and
the counts are reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hybrid.errors import HybridError
from hybrid.langs import validate_lang

MULTI = "multi"
KINDS = ("mono", "cross", "multi")


@dataclass(frozen=True)
class Setting:
    """One (query language, pool) pair; `pool_lang` is a language code or "multi"."""

    query_lang: str
    pool_lang: str

    @property
    def kind(self) -> str:
        if self.pool_lang == MULTI:
            return "multi"
        return "mono" if self.pool_lang == self.query_lang else "cross"

    @property
    def key(self) -> str:
        return f"{self.query_lang}-{self.pool_lang}"


def settings_for(languages: Sequence[str]) -> list[Setting]:
    """Every setting over `languages`: per query language X, X-X, X-Y (Y != X), X-multi."""
    langs = [validate_lang(x, where="languages") for x in languages]
    if len(set(langs)) != len(langs):
        raise HybridError(f"languages: duplicate language in {','.join(langs)}")
    if not langs:
        raise HybridError("languages: need at least one language")
    out = []
    for x in langs:
        out.append(Setting(x, x))
        out.extend(Setting(x, y) for y in langs if y != x)
        out.append(Setting(x, MULTI))
    return out


def relevant_languages(questions: pd.DataFrame, candidates: pd.DataFrame, qrels: pd.DataFrame,
                       languages: Sequence[str]) -> pd.DataFrame:
    """One row per question (index qid, in `questions` order), one bool column per language:
    does the question have a relevant candidate in that language?"""
    lang_of = pd.Series(candidates["lang"].to_numpy(), index=candidates["cid"].to_numpy())
    rel = qrels.assign(clang=lang_of.reindex(qrels["cid"].to_numpy()).to_numpy())
    rel = rel[rel["clang"].isin(list(languages))]
    table = pd.crosstab(rel["qid"], rel["clang"]).reindex(
        index=questions["qid"].to_numpy(), columns=list(languages), fill_value=0)
    return table.fillna(0).astype(np.int64) > 0


def setting_counts(questions: pd.DataFrame, candidates: pd.DataFrame, qrels: pd.DataFrame,
                   languages: Sequence[str]) -> dict[str, dict[str, int]]:
    """{setting key: {"queries": n joined, "skipped": n skipped}} for `settings_for(languages)`."""
    has = relevant_languages(questions, candidates, qrels, languages)
    qlang = questions["lang"].to_numpy()
    out = {}
    for s in settings_for(languages):
        mine = qlang == s.query_lang
        joined = has.to_numpy().any(axis=1) if s.pool_lang == MULTI else has[s.pool_lang].to_numpy()
        n = int((mine & joined).sum())
        out[s.key] = {"queries": n, "skipped": int(mine.sum()) - n}
    return out
