"""Training inputs for tests of the core without a pairs table or a sampler: `ToyTexts`
(the texts interface of `hybrid.train.core.Trainer`) and hand-made global batches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hybrid.sampling import Batch, Pair

LANGS = ("en", "de", "zh")


class ToyTexts:
    """Rows (dataset, xling_id, lang) -> question, positive, hard negatives. In dataset
    "flip" question i is paired with the answer of i + 1 (a validation set that training on
    "toy" makes worse)."""

    def __init__(self, n_ids: int = 64):
        self.n = n_ids

    def _q(self, i: int, lg: str) -> str:
        return f"{lg} question {i} about topic {i % 7} and item {i * 13 % 11}"

    def _p(self, i: int, lg: str) -> str:
        return f"{lg} the answer to number {i} is topic {i % 7}, item {i * 13 % 11}" + " word" * (i % 5)

    def batch(self, batch: Batch, hard: int, seed: int):
        shift = 1 if batch.dataset == "flip" else 0
        qs, ps, hs = [], [], []
        for p in batch.pairs:
            i = int(p.xling_id[2:])
            qs.append(self._q(i, p.q_lang))
            ps.append(self._p((i + shift) % self.n, p.p_lang))
            rng = np.random.default_rng([seed, batch.step, i])  # per pair: any slicing, same texts
            hs += [f"{p.p_lang} unrelated sentence {int(j)} near {i}" for j in rng.integers(0, 99, hard)]
        return qs, ps, hs


def batch_at(step: int, size: int = 8, n_ids: int = 64, dataset: str = "toy", seed: int = 0) -> Batch:
    """A global batch of `size` distinct ids with random (q_lang, p_lang), a pure function of
    its arguments."""
    rng = np.random.default_rng([seed, step])
    ids = rng.choice(n_ids, size, replace=False)
    langs = rng.integers(0, len(LANGS), (size, 2))
    pairs = tuple(Pair(f"id{i}", LANGS[a], LANGS[b]) for i, (a, b) in zip(ids, langs, strict=True))
    return Batch(step, "mixed", dataset, pairs)


def without_dropout(model_dir: Path) -> Path:
    """Set the dropout probabilities of a model directory's config.json to 0."""
    path = Path(model_dir) / "config.json"
    cfg = json.loads(path.read_text())
    cfg.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    path.write_text(json.dumps(cfg))
    return Path(model_dir)
