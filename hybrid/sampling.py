"""Batch sampling from the parallel QA table: the paper's idea (arXiv 2408.10536) in one place.

Input: the compact index of the parallel QA table (`hybrid.data.table.PairsIndex`: integer
codes for dataset, xling_id and lang, no Python object per row), or a DataFrame with columns
dataset, xling_id, lang (indexed with the same code, `index_from_frame`). Pools are arrays of
id codes; codes are ranks in sorted order, so the stream is the one the former pandas
implementation drew (tests/test_sampling_equivalence.py). A *pair* is composed from two rows of the
same xling_id: the question in `q_lang` and the positive passage in `p_lang`.

Strategies (`STRATEGIES`):

| strategy   | batch type | pairs of a batch |
| ---------- | ---------- | ---------------- |
| `x-x-mono` | mono       | all q_lang == p_lang == X, X uniform over the dataset's languages |
| `x-y`      | cross      | every pair q_lang != p_lang, both drawn per pair |
| `hybrid`   | mono with probability alpha, else cross (alpha in [0, 1], default 0.5; or alpha_at(step) of a schedule) |
| `en-en`    | mono       | X = "en" always (LAReQA baseline) |
| `x-x`      | same       | q_lang == p_lang per pair, languages mixed within a batch (LAReQA baseline) |
| `multitask`| mixed      | q_lang, p_lang drawn independently per pair among the id's languages (equal or not); datasets taken round-robin (multitask baseline) |

Recipes (issue #19; tests/test_recipes_sampling.py):
- *alpha schedules* (`hybrid` only): `alpha_schedule` constant | linear | cosine moves the
  mono probability from `alpha` at global step 0 to `alpha_end` at step `total_steps` - 1
  (`alpha_at`, the one rule); global step s of epoch e, step i is s = e * len(sampler) + i.
  Pools are built for every batch type some step may need.
- *parallel answers* (`parallel_k` = k > 1; `hybrid`, `x-y`): a cross batch takes
  batch_size / k ids, each with k adjacent pairs whose passage languages are k distinct
  languages of the id, each pair's question language uniform among the id's other
  languages; only ids in >= max(2, k) languages are usable for cross batches. Mono batches
  are unchanged. Pair with `info_nce_loss(multi_positive=True)` to use the k answers as
  positives (else they are masked as today).

Invariants (each one is tested):
- no xling_id appears twice in a global batch (its parallel answers would be false
  negatives), except the k pairs of one id in a cross batch with `parallel_k` = k > 1,
  which are adjacent and have k distinct passage languages;
- a mono batch is single-language; in a cross batch every pair crosses languages, its two
  languages drawn uniformly from the languages in which that xling_id exists (so partially
  parallel data such as MLQA-R works); X of a mono batch is uniform over the dataset's
  languages with at least `batch_size` ids (others are listed in `excluded_languages`);
- the mono probability of global step s is `alpha_at(s)` (constant `alpha` by default);
- each batch's dataset is drawn with probability proportional to its number of usable ids,
  except for `multitask`, where global step s takes dataset `datasets[s % len(datasets)]`
  (sorted names, round-robin over all epochs);
- a `multitask` ("mixed") batch has no mono/cross structure: each pair's q_lang and p_lang
  are drawn independently and uniformly among the languages in which its xling_id exists,
  so same-language and cross-language pairs share a batch (P(q_lang == p_lang) = 1/k for an
  id in k languages); every id of a dataset is usable, and a dataset with fewer than
  `batch_size` ids is an error;
- `len(sampler)` (steps per epoch: usable ids // batch_size, at least 1) depends only on
  the table, the strategy's pools and the global batch size, so it is exact and identical on
  every rank (with `parallel_k` = k a cross batch takes batch_size / k ids, so an epoch of
  `x-y` sees about 1/k of the ids before they are reshuffled);
- the stream is a pure function of (table, strategy, alpha, alpha schedule and run length,
  parallel_k, batch_size, seed, epoch); the defaults (constant, k = 1) draw exactly the
  stream of before.

Distributed: the global batch is decided once per global step (dataset, type and mono
language from a generator seeded by (seed, epoch, step); ids from per-epoch shuffles seeded
by (seed, epoch)); every rank computes the same global batch and keeps the disjoint,
contiguous slice `[rank * b, (rank + 1) * b)` with `b = batch_size / world_size`. Negatives
gathered across workers therefore rebuild exactly the global batch: a mono step stays mono.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from hybrid.errors import HybridError

STRATEGIES = ("hybrid", "x-x-mono", "x-y", "x-x", "en-en", "multitask")


ALPHA_SCHEDULES = ("constant", "linear", "cosine")


def alpha_at(step: int, alpha: float, alpha_end: float | None = None, schedule: str = "constant",
             total_steps: int | None = None) -> float:
    """The probability of a mono batch at global step `step` (0-based) of a run of
    `total_steps` steps: the one rule of the alpha schedules.

    - constant: `alpha` at every step;
    - linear: alpha + (alpha_end - alpha) * s / (T - 1);
    - cosine: alpha_end + (alpha - alpha_end) * (1 + cos(pi * s / (T - 1))) / 2;

    so step 0 gets exactly `alpha` and step T - 1 exactly `alpha_end` (None: `alpha`); steps
    past T - 1 keep `alpha_end`, and T = 1 gives `alpha`. alpha=1, alpha_end=0 goes from
    mono-heavy to cross-heavy; alpha=0, alpha_end=1 the reverse."""
    if schedule == "constant" or alpha_end is None:
        return float(alpha)
    if schedule not in ALPHA_SCHEDULES:
        raise HybridError(f"--alpha-schedule: unknown {schedule!r} (choose from {', '.join(ALPHA_SCHEDULES)})")
    t = min(max(step, 0) / (total_steps - 1), 1.0) if total_steps and total_steps > 1 else 0.0
    # weight of `alpha`: 1 at s = 0, 0 at s = T - 1; the convex form is exact at both ends
    w = 1.0 - t if schedule == "linear" else (1.0 + math.cos(math.pi * t)) / 2.0
    return min(max(alpha * w + alpha_end * (1.0 - w), 0.0), 1.0)


def _is_prob(x) -> bool:
    return not isinstance(x, bool) and isinstance(x, (int, float)) and math.isfinite(x) and 0.0 <= x <= 1.0


def check_sampling(strategy: str, alpha: float, batch_size: int, world_size: int = 1, *,
                   alpha_end: float | None = None, alpha_schedule: str = "constant",
                   parallel_k: int = 1, total_steps: int | None = None) -> None:
    """Raise HybridError (naming the option) unless `strategy` is one of `STRATEGIES`, `alpha`
    is a finite number in [0, 1], `batch_size` an integer >= 2 (in-batch negatives) and
    divisible by `world_size` >= 1 (each worker draws batch_size / world_size pairs).
    Recipes: `alpha_schedule` (one of `ALPHA_SCHEDULES`) and `alpha_end` (in [0, 1]) need
    strategy hybrid, `alpha_end` a schedule other than constant, and a schedule a run length
    `total_steps` >= 1 (where given); `parallel_k` >= 1 divides `batch_size`, leaves >= 2 ids
    per cross batch and, when > 1, needs a strategy with cross batches (hybrid, x-y). The
    sampler and `TrainConfig.validate` both call it: one home for these rules."""
    if strategy not in STRATEGIES:
        raise HybridError(f"--strategy: unknown {strategy!r} (choose from {', '.join(STRATEGIES)})")
    if not _is_prob(alpha):
        raise HybridError(f"--alpha: must be in [0, 1], got {alpha!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, float)) \
            or int(batch_size) != batch_size or batch_size < 2:
        raise HybridError(f"--batch-size: must be an integer >= 2 (in-batch negatives), got {batch_size!r}")
    if int(world_size) != world_size or world_size < 1:
        raise HybridError(f"--workers: must be >= 1, got {world_size!r}")
    if batch_size % world_size:
        raise HybridError(f"--batch-size: {batch_size} is not divisible by the {world_size} workers")
    if alpha_schedule not in ALPHA_SCHEDULES:
        raise HybridError(f"--alpha-schedule: unknown {alpha_schedule!r} (choose from {', '.join(ALPHA_SCHEDULES)})")
    if alpha_schedule != "constant" and strategy != "hybrid":
        raise HybridError(f"--alpha-schedule: {alpha_schedule} needs strategy hybrid, not {strategy}")
    if alpha_end is not None:
        if strategy != "hybrid":
            raise HybridError(f"--alpha-end: needs strategy hybrid, not {strategy}")
        if not _is_prob(alpha_end):
            raise HybridError(f"--alpha-end: must be in [0, 1], got {alpha_end!r}")
        if alpha_schedule == "constant":
            raise HybridError("--alpha-end: needs --alpha-schedule linear or cosine (constant keeps --alpha)")
    if alpha_schedule != "constant" and total_steps is not None and (
            isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1):
        raise HybridError(f"--steps: an alpha schedule needs a run length >= 1, got {total_steps!r}")
    if isinstance(parallel_k, bool) or not isinstance(parallel_k, int) or parallel_k < 1:
        raise HybridError(f"--parallel-k: must be an integer >= 1, got {parallel_k!r}")
    if parallel_k > 1:
        if strategy not in ("hybrid", "x-y"):
            raise HybridError(f"--parallel-k: needs a strategy with cross batches (hybrid, x-y), not {strategy}")
        if batch_size % parallel_k or batch_size // parallel_k < 2:
            raise HybridError(f"--parallel-k: {parallel_k} must divide --batch-size {batch_size} and leave "
                              "at least 2 ids per cross batch")


BATCH_TYPES = ("mono", "cross", "same", "mixed")


@dataclass(frozen=True)
class Pair:
    """One training pair: the question of `xling_id` in `q_lang`, its answer in `p_lang`."""

    xling_id: str
    q_lang: str
    p_lang: str


@dataclass(frozen=True)
class Batch:
    """A global batch (or one rank's slice of it) at global step `step` (0-based, all epochs)."""

    step: int
    type: str
    dataset: str
    pairs: tuple[Pair, ...]
    language: str | None = None  # X for mono batches

    def to_json(self) -> dict:
        """The `hybrid batches` line: {"step", "type", "dataset", "pairs": [...]}."""
        return {
            "step": self.step,
            "type": self.type,
            "dataset": self.dataset,
            "pairs": [{"xling_id": p.xling_id, "q_lang": p.q_lang, "p_lang": p.p_lang}
                      for p in self.pairs],
        }


class _Cycler:
    """Ids of one pool in shuffled order, reshuffled when used up; never repeats within a take."""

    def __init__(self, ids: np.ndarray, rng: np.random.Generator):
        self.ids, self.rng = ids, rng
        self.order = rng.permutation(ids)
        self.pos = 0

    def take(self, n: int) -> np.ndarray:
        out = self.order[self.pos:self.pos + n]
        self.pos += len(out)
        if len(out) < n:  # wrap: reshuffle, ids already taken go to the back of the new order
            order = self.rng.permutation(self.ids)
            taken = np.isin(order, out)
            self.order = np.concatenate([order[~taken], order[taken]])
            self.pos = n - len(out)
            out = np.concatenate([out, self.order[:self.pos]])
        return out


_TYPE_CODES = {t: k for k, t in enumerate(BATCH_TYPES)}


@dataclass
class _Plan:
    """One epoch's global batches as arrays: per step dataset, type and mono language codes
    (-1: none); per pair the id code and question / passage language codes."""

    ds: np.ndarray
    type: np.ndarray
    lang: np.ndarray
    ids: np.ndarray
    q: np.ndarray
    p: np.ndarray


class HybridBatchSampler:
    """Yields batches of pairs for one of `STRATEGIES` (see the module docstring).

    Args:
        pairs: a `PairsIndex` (or a `PairsTable`, whose index is used), or a DataFrame with
            at least columns dataset, xling_id, lang (unique triples).
        strategy: one of `STRATEGIES`.
        batch_size: the *global* batch size (pairs per step over all workers).
        alpha: probability of a mono batch for `hybrid` (ignored otherwise), in [0, 1].
        seed: the stream is a pure function of (seed, epoch).
        rank, world_size: this worker's slice of each global batch; `batch_size` must be
            divisible by `world_size`.
        alpha_end, alpha_schedule, total_steps: the alpha schedule (`alpha_at`) of a run of
            `total_steps` steps (`hybrid` only); global step s draws a mono batch with
            probability alpha_at(s). The defaults (constant) keep `alpha` at every step.
        parallel_k: in a cross batch, batch_size / k ids with k pairs each, whose passage
            languages are k distinct languages of the id (the default 1: one pair per id).

    Raises HybridError on bad parameters or when a needed pool has fewer than `batch_size`
    unique ids (e.g. no language of a dataset has `batch_size` ids for mono batches).
    Memory: the pools and one epoch's plan are integer arrays (about 10 bytes per id).
    """

    def __init__(self, pairs, strategy: str = "hybrid", batch_size: int = 32, alpha: float = 0.5,
                 seed: int = 0, rank: int = 0, world_size: int = 1, *, alpha_end: float | None = None,
                 alpha_schedule: str = "constant", total_steps: int | None = None, parallel_k: int = 1):
        from hybrid.data.table import PairsIndex, index_from_frame

        check_sampling(strategy, alpha, batch_size, world_size, alpha_end=alpha_end,
                       alpha_schedule=alpha_schedule, parallel_k=parallel_k, total_steps=total_steps)
        if alpha_schedule != "constant" and total_steps is None:
            raise HybridError(f"--alpha-schedule: {alpha_schedule} needs the run length (total_steps)")
        if not 0 <= rank < world_size:
            raise HybridError(f"rank {rank} / world size {world_size}: invalid")
        index = getattr(pairs, "index", pairs)
        if not isinstance(index, PairsIndex):
            index = index_from_frame(pairs)
        if index.n_rows == 0:
            raise HybridError("pairs table: no rows")
        self.index = index
        self.strategy, self.alpha, self.seed = strategy, float(alpha), int(seed)
        self.batch_size, self.rank, self.world_size = int(batch_size), rank, world_size
        self.local_batch_size = self.batch_size // world_size
        self.alpha_end = None if alpha_end is None else float(alpha_end)
        self.alpha_schedule, self.total_steps = alpha_schedule, total_steps
        self.parallel_k = int(parallel_k)
        if strategy == "x-x-mono" or strategy == "en-en":
            self.mono_p = 1.0
        elif strategy == "hybrid":
            self.mono_p = self.alpha
        else:
            self.mono_p = 0.0
        self._scheduled = strategy == "hybrid" and alpha_schedule != "constant" and alpha_end is not None
        # the range of the mono probability over all steps: which pools some step may need
        ends = (self.mono_p, self.alpha_end) if self._scheduled else (self.mono_p,)
        self._mono_max, self._mono_min = max(ends), min(ends)
        self._build_pools()
        self._plan_epoch: int | None = None
        self._plan: _Plan | None = None
        self.epoch = 0

    # -- pools ---------------------------------------------------------------------------
    def _build_pools(self) -> None:
        ix, B = self.index, self.batch_size
        self.datasets: list[str] = []
        self._ds_codes: list[int] = []
        self.sizes: list[int] = []
        self.pools: dict[tuple[str, str], np.ndarray] = {}     # (dataset, lang|"*cross"|"*all") -> id codes
        self.languages: dict[str, list[str]] = {}              # dataset -> mono languages
        self.excluded_languages: dict[str, list[str]] = {}     # too few ids for mono batches
        for d, ds in enumerate(ix.datasets):
            ids = ix.ids_of(d)
            if not len(ids):
                continue
            counts = (ix.id_ptr[ids + 1] - ix.id_ptr[ids]).astype(np.int64)
            row_id = np.repeat(ids, counts)  # the id of each row of the dataset, ascending
            row_lang = ix.id_lang[_ranges(ix.id_ptr[ids], counts)]
            present = np.flatnonzero(np.bincount(row_lang, minlength=len(ix.langs)))
            by_lang = {ix.langs[lg]: row_id[row_lang == lg] for lg in present}
            usable = np.zeros(len(ix.id_names), dtype=bool)  # over all id codes: no sort
            if self.strategy == "en-en":
                if "en" not in by_lang:
                    continue  # datasets without English take no part in en-en
                by_lang = {"en": by_lang["en"]}
            if self._mono_max > 0:
                ok = {lg: c for lg, c in by_lang.items() if len(c) >= B}
                if not ok:
                    lg, c = max(by_lang.items(), key=lambda kv: len(kv[1]))
                    raise HybridError(f"--batch-size: {B} > unique ids available in every language "
                                      f"of dataset {ds!r} (most: {len(c)} in {lg!r})")
                for lg, c in ok.items():
                    self.pools[(ds, lg)] = c
                for c in ok.values():
                    usable[c] = True
                self.languages[ds] = sorted(ok)
                self.excluded_languages[ds] = sorted(set(by_lang) - set(ok))
            if self._mono_min < 1 and self.strategy not in ("x-x", "multitask"):
                k = self.parallel_k
                multi = ids[counts >= max(2, k)]
                if not len(multi) and k == 1:
                    raise HybridError(f"pairs table: no xling_id of dataset {ds!r} has rows in two "
                                      f"languages, and strategy {self.strategy} needs cross-lingual "
                                      f"pairs (parallel questions); use x-x-mono, or add translations")
                if k == 1 and len(multi) < B:
                    raise HybridError(f"--batch-size: {B} > unique ids available in two or more "
                                      f"languages of dataset {ds!r} ({len(multi)}) for cross batches")
                if k > 1 and len(multi) < B // k:
                    raise HybridError(f"--parallel-k: {k} needs --batch-size / {k} = {B // k} ids in "
                                      f"{max(2, k)} or more languages for cross batches; dataset {ds!r} "
                                      f"has {len(multi)}")
                self.pools[(ds, "*cross")] = multi
                usable[multi] = True
            if self.strategy in ("x-x", "multitask"):
                if len(ids) < B:
                    raise HybridError(f"--batch-size: {B} > unique ids in dataset {ds!r} ({len(ids)})")
                self.pools[(ds, "*all")] = ids
                usable[ids] = True
            self.datasets.append(ds)
            self._ds_codes.append(d)
            self.sizes.append(int(usable.sum()))
        if not self.datasets:
            raise HybridError("pairs table: no dataset has English rows for strategy en-en")
        self.probs = np.array(self.sizes, dtype=float) / sum(self.sizes)
        # k > 1: a cross batch takes B / k ids, so the usable ids may be fewer than B
        self.steps_per_epoch = max(1, sum(self.sizes) // B)
        self._lang_code = {lg: k for k, lg in enumerate(self.index.langs)}

    # -- the stream ----------------------------------------------------------------------
    def __len__(self) -> int:
        """Steps per epoch: usable ids over the global batch size (same on every rank)."""
        return self.steps_per_epoch

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch that `__iter__` yields (as torch's DistributedSampler)."""
        self.epoch = int(epoch)

    def mono_prob(self, step: int) -> float:
        """The probability of a mono batch at global step `step` (`alpha_at` of the schedule;
        1 for x-x-mono and en-en, 0 for the other strategies)."""
        if not self._scheduled:
            return self.mono_p
        return alpha_at(step, self.alpha, self.alpha_end, self.alpha_schedule, self.total_steps)

    def _compact_plan(self, epoch: int) -> _Plan:
        if self._plan_epoch != epoch:
            self._plan = self._make_plan(epoch)
            self._plan_epoch = epoch
        return self._plan

    def epoch_plan(self, epoch: int) -> list[Batch]:
        """All global batches of `epoch`, identical on every rank (materialised: for
        inspection and tests; training reads one batch at a time with `global_batch`)."""
        return [self._batch(epoch, i) for i in range(len(self))]

    def global_batch(self, step: int) -> Batch:
        """The global batch of global step `step` (counted over all epochs from 0)."""
        epoch, i = divmod(int(step), len(self))
        return self._batch(epoch, i)

    def _batch(self, epoch: int, i: int) -> Batch:
        plan, ix = self._compact_plan(epoch), self.index
        langs = ix.langs
        pairs = tuple(Pair(ix.name(x), langs[q], langs[p])
                      for x, q, p in zip(plan.ids[i].tolist(), plan.q[i].tolist(), plan.p[i].tolist(), strict=True))
        lang = langs[plan.lang[i]] if plan.lang[i] >= 0 else None
        return Batch(epoch * len(self) + i, BATCH_TYPES[plan.type[i]], self.datasets[plan.ds[i]], pairs, lang)

    def local(self, batch: Batch) -> Batch:
        """This rank's contiguous slice of a global batch."""
        b = self.local_batch_size
        return Batch(batch.step, batch.type, batch.dataset,
                     batch.pairs[self.rank * b:(self.rank + 1) * b], batch.language)

    def __iter__(self) -> Iterator[Batch]:
        """This rank's slices of the batches of the epoch set by `set_epoch`."""
        for i in range(len(self)):
            yield self.local(self._batch(self.epoch, i))

    def stream(self, start: int = 0, stop: int | None = None) -> Iterator[Batch]:
        """Global batches of steps start, start+1, ... (stop excluded; None: endless)."""
        step = start
        while stop is None or step < stop:
            yield self.global_batch(step)
            step += 1

    def _make_plan(self, epoch: int) -> _Plan:
        ix = self.index
        id_rng = np.random.default_rng([self.seed, epoch])
        cyclers = {key: _Cycler(ids, id_rng) for key, ids in sorted(self.pools.items())}
        B, n = self.batch_size, len(self)
        plan = _Plan(np.zeros(n, np.int32), np.zeros(n, np.int8), np.full(n, -1, np.int16),
                     np.zeros((n, B), np.int64), np.zeros((n, B), np.int16), np.zeros((n, B), np.int16))
        for i in range(n):
            rng = np.random.default_rng([self.seed, epoch, i])
            d = int(rng.choice(len(self.datasets), p=self.probs))
            mono = bool(rng.random() < self.mono_prob(epoch * n + i))
            if self.strategy == "multitask":
                d = (epoch * n + i) % len(self.datasets)
            ds = self.datasets[d]
            plan.ds[i] = d
            if self.strategy in ("multitask", "x-x"):
                ids = cyclers[(ds, "*all")].take(B)
                start, k = ix.id_ptr[ids], ix.id_ptr[ids + 1] - ix.id_ptr[ids]
                if self.strategy == "multitask":  # q then p per pair, drawn in that order
                    draws = rng.integers(0, np.repeat(k, 2)).reshape(B, 2)
                    q, p = draws[:, 0], draws[:, 1]
                else:
                    q = p = rng.integers(0, k)
                plan.type[i] = _TYPE_CODES["mixed" if self.strategy == "multitask" else "same"]
                plan.q[i], plan.p[i] = ix.id_lang[start + q], ix.id_lang[start + p]
            elif mono:
                lang = self.languages[ds][int(rng.integers(len(self.languages[ds])))]
                ids = cyclers[(ds, lang)].take(B)
                plan.type[i] = _TYPE_CODES["mono"]
                plan.lang[i] = plan.q[i] = plan.p[i] = self._lang_code[lang]
            elif self.parallel_k == 1:
                ids = cyclers[(ds, "*cross")].take(B)
                start, k = ix.id_ptr[ids], ix.id_ptr[ids + 1] - ix.id_ptr[ids]
                draws = rng.integers(0, np.stack([k, k - 1], axis=1).reshape(-1)).reshape(B, 2)
                q, p = draws[:, 0], draws[:, 1]
                p = p + (p >= q)
                plan.type[i] = _TYPE_CODES["cross"]
                plan.q[i], plan.p[i] = ix.id_lang[start + q], ix.id_lang[start + p]
            else:  # parallel answers: B / k ids, k pairs each with distinct passage languages
                kk = self.parallel_k
                ids = cyclers[(ds, "*cross")].take(B // kk)
                start, k = ix.id_ptr[ids], ix.id_ptr[ids + 1] - ix.id_ptr[ids]
                # a uniform k-subset of each id's languages, in random order: the k smallest
                # of uniform keys, keys past the id's languages set to 2
                keys = rng.random((len(ids), int(k.max())))
                keys[np.arange(keys.shape[1])[None, :] >= k[:, None]] = 2.0
                p = np.argsort(keys, axis=1, kind="stable")[:, :kk]
                q = rng.integers(0, np.repeat(k - 1, kk)).reshape(len(ids), kk)
                q = q + (q >= p)  # uniform over the id's other languages
                plan.type[i] = _TYPE_CODES["cross"]
                plan.q[i] = ix.id_lang[(start[:, None] + q).reshape(-1)]
                plan.p[i] = ix.id_lang[(start[:, None] + p).reshape(-1)]
                ids = np.repeat(ids, kk)
            plan.ids[i] = ids
        return plan


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenated aranges [s, s + c) for each (s, c) with every c >= 1, as one int64 array."""
    if not len(counts):
        return np.zeros(0, dtype=np.int64)
    starts, counts = starts.astype(np.int64), counts.astype(np.int64)
    steps = np.ones(int(counts.sum()), dtype=np.int64)
    steps[0] = starts[0]
    steps[np.cumsum(counts)[:-1]] = starts[1:] - (starts[:-1] + counts[:-1] - 1)
    return np.cumsum(steps)
