"""Training data over the out-of-core pairs table (`hybrid.data.table.PairsTable`).

- `load_table(path)`: the validated, memory-mapped table (derived into the cache once).
- `split_validation(table, val_ids)`: per dataset the `val_ids` xling_ids with the smallest
  blake2b-64 hash of "dataset/xling_id" held out, in every language; deterministic and
  seed-independent. Over a table or index it returns two views (id masks, no copy); over
  a DataFrame, two DataFrames.
- `make_samplers(table, cfg, rank, world)`: (train sampler, validation sampler or None).
  The train sampler follows the alpha schedule over `run.steps` steps and draws
  `parallel_k` pairs per id in cross batches; the validation sampler draws with the same
  `parallel_k` and a *constant* alpha, the schedule's midpoint (alpha + alpha_end) / 2 (the
  mean mono share over the run, for linear and cosine), so every evaluation of a run sees
  the same validation batches.
- `Texts(table)`: the question, positive and hard-negative texts of a batch, fetched by row
  from the memory map (`PairsTable.batch`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hybrid.data.table import PairsIndex, PairsTable, index_from_frame
from hybrid.errors import HybridError
from hybrid.sampling import HybridBatchSampler

VAL_SEED = 0  # validation batches do not depend on the run's seed: runs stay comparable


def load_table(path: str | Path) -> PairsTable:
    """The pairs table of `path` (directory or pairs.parquet), validated and mapped."""
    return PairsTable.open(path)


def val_mask(index: PairsIndex, val_ids: int) -> np.ndarray:
    """Bool per id code: the held-out ids (see the module docstring)."""
    mask = np.zeros(len(index.id_names), dtype=bool)
    for d, ds in enumerate(index.datasets):
        ids = index.ids_of(d)
        if val_ids >= len(ids):
            raise HybridError(f"data.val_ids: {val_ids} >= the {len(ids)} ids of dataset {ds!r}")
        ranked = ids[np.argsort(index.id_hash[ids], kind="stable")]  # ids ascending: ties by id
        mask[ranked[:val_ids]] = True
    return mask


def split_validation(table, val_ids: int):
    """(train, val) of a `PairsTable` or `PairsIndex` (as two `PairsIndex` views) or of a
    DataFrame (as two DataFrames, rows in their order)."""
    index = getattr(table, "index", table)
    frame = not isinstance(index, PairsIndex)
    if frame:
        index = index_from_frame(table)
    if val_ids == 0:
        return (table, table.iloc[0:0]) if frame else (index, index.subset(np.zeros(len(index.id_names), bool)))
    is_val = val_mask(index, val_ids)
    if not frame:
        return index.subset(~is_val), index.subset(is_val)
    row_val = np.zeros(len(index.id_row), dtype=bool)
    row_val[index.id_row] = np.repeat(is_val, np.diff(index.id_ptr))
    return table[~row_val].reset_index(drop=True), table[row_val].reset_index(drop=True)


def val_alpha_of(data) -> float:
    """The validation sampler's constant alpha: `data.alpha`, or with a linear/cosine
    schedule its midpoint (alpha + alpha_end) / 2 (`alpha_at` at step (T - 1) / 2)."""
    if data.alpha_schedule == "constant" or data.alpha_end is None:
        return data.alpha
    return (data.alpha + data.alpha_end) / 2


def make_samplers(table, cfg, rank: int = 0, world: int = 1):
    """(train sampler, validation sampler or None) over the split of `table` (a PairsTable,
    PairsIndex or DataFrame) for `cfg` (`hybrid.train.config.TrainConfig`)."""
    d = cfg.data
    train_t, val_t = split_validation(table, d.val_ids)
    train = HybridBatchSampler(train_t, d.strategy, d.batch_size, d.alpha, cfg.run.seed, rank, world,
                               alpha_end=d.alpha_end, alpha_schedule=d.alpha_schedule,
                               total_steps=cfg.run.steps, parallel_k=d.parallel_k)
    val = None
    if (val_t.n_rows if isinstance(val_t, PairsIndex) else len(val_t)):
        val_alpha = val_alpha_of(d)
        try:
            val = HybridBatchSampler(val_t, d.strategy, d.batch_size, val_alpha, VAL_SEED, rank, world,
                                     parallel_k=d.parallel_k)
        except HybridError as exc:
            raise HybridError(f"validation split (data.val_ids={d.val_ids}): {exc}") from None
    return train, val


class Texts:
    """(dataset, xling_id, lang) -> question, positive, hard negatives, for a `PairsTable`
    (rows fetched from the memory map per batch) or a DataFrame (made a `PairsTable` in
    memory, same rules)."""

    def __init__(self, table):
        self.table = table if isinstance(table, PairsTable) else PairsTable.from_frame(table)

    def batch(self, batch, hard: int, seed: int) -> tuple[list[str], list[str], list[str]]:
        """Questions, positives, and `hard` hard negatives per pair (drawn with a generator
        seeded by (seed, step), repeating when a row has fewer)."""
        return self.table.batch(batch, hard, seed)
