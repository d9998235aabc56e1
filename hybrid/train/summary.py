"""What a training run reports: batch counters and the `train_summary.json` document."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hybrid.sampling import Batch


class BatchCounter:
    """Counts global batches by type and (mono) language, and pairs by language pair."""

    def __init__(self, state: dict | None = None):
        state = state or {}
        self.by_type = Counter(state.get("batches_by_type", {}))
        self.by_language = Counter(state.get("batches_by_language", {}))
        self.by_pair = Counter(state.get("pairs_by_language_pair", {}))

    def add(self, batch: Batch) -> None:
        self.by_type[batch.type] += 1
        self.by_language[batch.language or "mixed"] += 1
        self.by_pair.update(f"{p.q_lang}-{p.p_lang}" for p in batch.pairs)

    def state(self) -> dict[str, dict[str, int]]:
        return {"batches_by_type": dict(sorted(self.by_type.items())),
                "batches_by_language": dict(sorted(self.by_language.items())),
                "pairs_by_language_pair": dict(sorted(self.by_pair.items()))}


def make_summary(*, config: dict, step: int, batch_size: int, workers: int, counters: BatchCounter,
                 wall_time_s: float, train_time_s: float, val_history: list[dict],
                 best: dict, stopped_early: bool, segments: list[dict], settings: dict) -> dict[str, Any]:
    """The `train_summary.json` document (see docs/training.md for every field)."""
    pairs = step * batch_size
    return {
        "steps": step,
        "max_steps": config["run"]["steps"],
        "stopped_early": stopped_early,
        "pairs_seen": pairs,
        "batch_size": batch_size,
        "workers": workers,
        "strategy": config["data"]["strategy"],
        "alpha": config["data"]["alpha"],
        **counters.state(),
        "wall_time_s": round(wall_time_s, 3),
        "train_time_s": round(train_time_s, 3),
        "pairs_per_s": round(pairs / train_time_s, 3) if train_time_s > 0 else None,
        "best_val_loss": best.get("loss"),
        "best_step": best.get("step"),
        "first_val_loss": val_history[0]["loss"] if val_history else None,
        "final_val_loss": val_history[-1]["loss"] if val_history else None,
        "val_history": val_history,
        "segments": segments,
        **settings,
        "config": config,
    }
