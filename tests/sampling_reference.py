"""The batch sampler as it was before the compact index (hybrid/sampling.py at c8e7fc5),
kept verbatim as the reference its replacement must match batch for batch
(tests/test_sampling_equivalence.py). Not used by the library."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from hybrid.errors import HybridError
from hybrid.langs import validate_lang

STRATEGIES = ("hybrid", "x-x-mono", "x-y", "x-x", "en-en", "multitask")
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

    def take(self, n: int) -> list[str]:
        out = list(self.order[self.pos:self.pos + n])
        self.pos += len(out)
        if len(out) < n:  # wrap: reshuffle, ids already taken go to the back of the new order
            taken = set(out)
            order = self.rng.permutation(self.ids)
            self.order = np.concatenate([[i for i in order if i not in taken],
                                         [i for i in order if i in taken]])
            self.pos = n - len(out)
            out += list(self.order[:self.pos])
        return [str(i) for i in out]


class HybridBatchSampler:
    """Yields batches of pairs for one of `STRATEGIES` (see the module docstring).

    Args:
        pairs: DataFrame with at least columns dataset, xling_id, lang (unique triples).
        strategy: one of `STRATEGIES`.
        batch_size: the *global* batch size (pairs per step over all workers).
        alpha: probability of a mono batch for `hybrid` (ignored otherwise), in [0, 1].
        seed: the stream is a pure function of (seed, epoch).
        rank, world_size: this worker's slice of each global batch; `batch_size` must be
            divisible by `world_size`.

    Raises HybridError on bad parameters or when a needed pool has fewer than `batch_size`
    unique ids (e.g. no language of a dataset has `batch_size` ids for mono batches).
    """

    def __init__(self, pairs, strategy: str = "hybrid", batch_size: int = 32, alpha: float = 0.5,
                 seed: int = 0, rank: int = 0, world_size: int = 1):
        if strategy not in STRATEGIES:
            raise HybridError(f"--strategy: unknown strategy {strategy!r} (choose from {', '.join(STRATEGIES)})")
        if not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or not 0.0 <= alpha <= 1.0:
            raise HybridError(f"--alpha: must be in [0, 1], got {alpha!r}")
        if int(batch_size) != batch_size or batch_size < 2:
            raise HybridError(f"--batch-size: must be an integer >= 2 (in-batch negatives), got {batch_size!r}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise HybridError(f"rank {rank} / world size {world_size}: invalid")
        if batch_size % world_size:
            raise HybridError(f"--batch-size: {batch_size} is not divisible by the {world_size} workers")
        missing = {"dataset", "xling_id", "lang"} - set(pairs.columns)
        if missing:
            raise HybridError(f"pairs table: missing columns {', '.join(sorted(missing))}")
        if len(pairs) == 0:
            raise HybridError("pairs table: no rows")
        self.strategy, self.alpha, self.seed = strategy, float(alpha), int(seed)
        self.batch_size, self.rank, self.world_size = int(batch_size), rank, world_size
        self.local_batch_size = self.batch_size // world_size
        if strategy == "x-x-mono" or strategy == "en-en":
            self.mono_p = 1.0
        elif strategy == "hybrid":
            self.mono_p = self.alpha
        else:
            self.mono_p = 0.0
        self._build_pools(pairs)
        self._plan_epoch: int | None = None
        self._plan: list[Batch] = []
        self.epoch = 0

    # -- pools ---------------------------------------------------------------------------
    def _build_pools(self, pairs) -> None:
        table = pairs[["dataset", "xling_id", "lang"]].astype(str)
        if table.duplicated().any():
            row = table[table.duplicated()].iloc[0]
            raise HybridError(f"pairs table: duplicate row for dataset={row.dataset} "
                              f"xling_id={row.xling_id} lang={row.lang}")
        for lang in table["lang"].unique():
            validate_lang(lang, where="pairs table")
        B = self.batch_size
        self.datasets: list[str] = []
        self.sizes: list[int] = []
        self.id_langs: dict[str, dict[str, list[str]]] = {}   # dataset -> id -> sorted langs
        self.pools: dict[tuple[str, str], np.ndarray] = {}     # (dataset, lang|"*cross"|"*all")
        self.languages: dict[str, list[str]] = {}              # dataset -> mono languages
        self.excluded_languages: dict[str, list[str]] = {}     # too few ids for mono batches
        for ds, grp in table.groupby("dataset", sort=True):
            langs_of = grp.groupby("xling_id", sort=True)["lang"].agg(sorted).to_dict()
            by_lang = grp.groupby("lang", sort=True)["xling_id"].agg(sorted).to_dict()
            usable: set[str] = set()
            if self.strategy == "en-en":
                if "en" not in by_lang:
                    continue  # datasets without English take no part in en-en
                by_lang = {"en": by_lang["en"]}
            if self.mono_p > 0:
                ok = {lg: ids for lg, ids in by_lang.items() if len(ids) >= B}
                if not ok:
                    lg, ids = max(by_lang.items(), key=lambda kv: len(kv[1]))
                    raise HybridError(f"--batch-size: {B} > unique ids available in every language "
                                      f"of dataset {ds!r} (most: {len(ids)} in {lg!r})")
                for lg, ids in ok.items():
                    self.pools[(ds, lg)] = np.array(ids, dtype=object)
                    usable.update(ids)
                self.languages[ds] = sorted(ok)
                self.excluded_languages[ds] = sorted(set(by_lang) - set(ok))
            if self.mono_p < 1 and self.strategy not in ("x-x", "multitask"):
                multi = [i for i, lgs in langs_of.items() if len(lgs) >= 2]
                if not multi:
                    raise HybridError(f"pairs table: no xling_id of dataset {ds!r} has rows in two "
                                      f"languages, and strategy {self.strategy} needs cross-lingual "
                                      f"pairs (parallel questions); use x-x-mono, or add translations")
                if len(multi) < B:
                    raise HybridError(f"--batch-size: {B} > unique ids available in two or more "
                                      f"languages of dataset {ds!r} ({len(multi)}) for cross batches")
                self.pools[(ds, "*cross")] = np.array(multi, dtype=object)
                usable.update(multi)
            if self.strategy in ("x-x", "multitask"):
                if len(langs_of) < B:
                    raise HybridError(f"--batch-size: {B} > unique ids in dataset {ds!r} ({len(langs_of)})")
                self.pools[(ds, "*all")] = np.array(sorted(langs_of), dtype=object)
                usable.update(langs_of)
            self.datasets.append(str(ds))
            self.sizes.append(len(usable))
            self.id_langs[str(ds)] = langs_of
        if not self.datasets:
            raise HybridError("pairs table: no dataset has English rows for strategy en-en")
        self.probs = np.array(self.sizes, dtype=float) / sum(self.sizes)
        self.steps_per_epoch = sum(self.sizes) // B

    # -- the stream ----------------------------------------------------------------------
    def __len__(self) -> int:
        """Steps per epoch: usable ids over the global batch size (same on every rank)."""
        return self.steps_per_epoch

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch that `__iter__` yields (as torch's DistributedSampler)."""
        self.epoch = int(epoch)

    def epoch_plan(self, epoch: int) -> list[Batch]:
        """All global batches of `epoch`, identical on every rank (cached for one epoch)."""
        if self._plan_epoch != epoch:
            self._plan = self._make_plan(epoch)
            self._plan_epoch = epoch
        return self._plan

    def global_batch(self, step: int) -> Batch:
        """The global batch of global step `step` (counted over all epochs from 0)."""
        epoch, i = divmod(int(step), len(self))
        return self.epoch_plan(epoch)[i]

    def local(self, batch: Batch) -> Batch:
        """This rank's contiguous slice of a global batch."""
        b = self.local_batch_size
        return Batch(batch.step, batch.type, batch.dataset,
                     batch.pairs[self.rank * b:(self.rank + 1) * b], batch.language)

    def __iter__(self) -> Iterator[Batch]:
        """This rank's slices of the batches of the epoch set by `set_epoch`."""
        for batch in self.epoch_plan(self.epoch):
            yield self.local(batch)

    def stream(self, start: int = 0, stop: int | None = None) -> Iterator[Batch]:
        """Global batches of steps start, start+1, ... (stop excluded; None: endless)."""
        step = start
        while stop is None or step < stop:
            yield self.global_batch(step)
            step += 1

    def _make_plan(self, epoch: int) -> list[Batch]:
        id_rng = np.random.default_rng([self.seed, epoch])
        cyclers = {key: _Cycler(ids, id_rng) for key, ids in sorted(self.pools.items())}
        B, plan = self.batch_size, []
        for i in range(len(self)):
            rng = np.random.default_rng([self.seed, epoch, i])
            ds = self.datasets[int(rng.choice(len(self.datasets), p=self.probs))]
            mono = bool(rng.random() < self.mono_p)
            if self.strategy == "multitask":
                ds = self.datasets[(epoch * len(self) + i) % len(self.datasets)]
                ids = cyclers[(ds, "*all")].take(B)
                pairs = []
                for x in ids:
                    lgs = self.id_langs[ds][x]
                    pairs.append(Pair(x, lgs[int(rng.integers(len(lgs)))], lgs[int(rng.integers(len(lgs)))]))
                plan.append(Batch(epoch * len(self) + i, "mixed", ds, tuple(pairs)))
            elif self.strategy == "x-x":
                ids = cyclers[(ds, "*all")].take(B)
                langs = [self.id_langs[ds][x][int(rng.integers(len(self.id_langs[ds][x])))] for x in ids]
                pairs = tuple(Pair(x, lg, lg) for x, lg in zip(ids, langs, strict=True))
                plan.append(Batch(epoch * len(self) + i, "same", ds, pairs))
            elif mono:
                lang = self.languages[ds][int(rng.integers(len(self.languages[ds])))]
                ids = cyclers[(ds, lang)].take(B)
                plan.append(Batch(epoch * len(self) + i, "mono", ds,
                                  tuple(Pair(x, lang, lang) for x in ids), lang))
            else:
                ids = cyclers[(ds, "*cross")].take(B)
                pairs = []
                for x in ids:
                    lgs = self.id_langs[ds][x]
                    q = int(rng.integers(len(lgs)))
                    p = int(rng.integers(len(lgs) - 1))
                    pairs.append(Pair(x, lgs[q], lgs[p + (p >= q)]))
                plan.append(Batch(epoch * len(self) + i, "cross", ds, tuple(pairs)))
        return plan
