"""The deterministic train / held-out split of a benchmark by article.

Articles are the unit: an article's paragraphs and questions, in every language, go to one
side, so no xling_id, paragraph or article is on both sides and held-out topics are unseen
in training. The split depends only on the sorted article names, `heldout_fraction` and
`seed` (not on languages, file order or the Python hash seed).
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from hybrid.errors import HybridError


def article_split(b_or_articles, heldout_fraction: float = 0.5, seed: int = 0) -> tuple[set[str], set[str]]:
    """Return (train_articles, heldout_articles) for a `Benchmark` or an iterable of names.

    Invariants: the two sets are disjoint, their union is all articles, and
    `len(heldout) == round(heldout_fraction * n)` clamped to [1, n - 1] when n >= 2
    (so both sides are non-empty); with one article it goes to train.
    """
    if not (isinstance(heldout_fraction, (int, float)) and 0.0 < heldout_fraction < 1.0):
        raise HybridError(f"--heldout-fraction: must be strictly between 0 and 1, got {heldout_fraction!r}")
    articles: Iterable[str] = getattr(b_or_articles, "articles", b_or_articles)
    names = sorted(set(articles))
    if not names:
        raise HybridError("article_split: no articles to split")
    rng = random.Random(int(seed))
    rng.shuffle(names)
    n = len(names)
    k = min(max(round(heldout_fraction * n), 1), n - 1) if n >= 2 else 0
    return set(names[k:]), set(names[:k])
