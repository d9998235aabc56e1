"""The article split: deterministic, disjoint, complete; nothing shared across sides."""

from __future__ import annotations

import functools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybrid.data import article_split, read_lareqa
from hybrid.errors import HybridError
from hybrid.paths import default_data_dir


@functools.lru_cache(maxsize=1)
def _xquad():
    return read_lareqa(default_data_dir() / "lareqa" / "xquad-r", "xquad-r", ["en", "de", "zh"])


def test_default_split_halves_the_48_articles(data_dir):
    b = _xquad()
    train, heldout = article_split(b)
    assert len(train) == len(heldout) == 24
    assert article_split(b) == (train, heldout)
    assert article_split(b, seed=1) != (train, heldout)


def test_split_ignores_languages(data_dir):
    b = _xquad()
    assert article_split(b.subset(languages=["zh"])) == article_split(b)
    assert article_split(reversed(b.articles)) == article_split(b)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), fraction=st.floats(0.01, 0.99))
def test_split_invariants(data_dir, seed, fraction):
    b = _xquad()
    train, heldout = article_split(b, heldout_fraction=fraction, seed=seed)
    n = len(b.articles)
    assert train.isdisjoint(heldout) and train | heldout == set(b.articles)
    assert len(heldout) == min(max(round(fraction * n), 1), n - 1)
    assert article_split(b, heldout_fraction=fraction, seed=seed) == (train, heldout)
    tr, ho = b.subset(articles=train), b.subset(articles=heldout)
    assert set(tr.questions["xling_id"]).isdisjoint(ho.questions["xling_id"])
    paras = lambda x: set(zip(x.candidates["lang"], x.candidates["context_id"], strict=True))  # noqa: E731
    assert paras(tr).isdisjoint(paras(ho))
    assert len(tr.questions) + len(ho.questions) == len(b.questions)
    assert len(tr.candidates) + len(ho.candidates) == len(b.candidates)
    assert len(tr.qrels) + len(ho.qrels) == len(b.qrels)


@given(names=st.sets(st.text(min_size=1, max_size=5), min_size=1, max_size=30),
       fraction=st.floats(0.01, 0.99), seed=st.integers(0, 1000))
def test_split_of_plain_names(names, fraction, seed):
    train, heldout = article_split(names, heldout_fraction=fraction, seed=seed)
    assert train | heldout == names and not train & heldout
    assert train  # one article goes to train; two or more give both sides
    assert bool(heldout) == (len(names) >= 2)


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5, float("nan")])
def test_bad_fraction_is_an_error(fraction):
    with pytest.raises(HybridError, match="heldout-fraction"):
        article_split(["a", "b"], heldout_fraction=fraction)
