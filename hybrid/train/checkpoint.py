"""Training checkpoints on disk: `state.pt` sealed by its sha256 in `state.sha256`.

A checkpoint directory holds the `Trainer.state_dict()` (hybrid.train.core) written with
`torch.save`; the seal is written after it, so a directory without a matching seal was cut
short or damaged. Reading verifies the seal and uses `torch.load(weights_only=True)`; a
damaged checkpoint falls back to the newest intact earlier `step-*` beside it. No Ray.
"""

from __future__ import annotations

from pathlib import Path

import torch

from hybrid.errors import HybridError
from hybrid.hashing import sha256_file

STATE_FILE = "state.pt"
STATE_SUM = "state.sha256"  # sha256 of state.pt, written after it: a checkpoint's seal


def write_state(d: Path, state: dict) -> None:
    """`state.pt`, then its sha256 in `state.sha256`."""
    torch.save(state, d / STATE_FILE)
    (d / STATE_SUM).write_text(sha256_file(d / STATE_FILE) + "\n", encoding="utf-8")


def state_intact(d: Path) -> bool:
    """True if `d` holds a state.pt whose sha256 matches its seal."""
    try:
        return (d / STATE_SUM).read_text(encoding="utf-8").strip() == sha256_file(d / STATE_FILE)
    except OSError:
        return False


def step_of(d: Path) -> int:
    """The step of a checkpoint directory named `step-NNNNNN[-final]`, else -1."""
    try:
        return int(d.name.split("-")[1])
    except (IndexError, ValueError):
        return -1


def read_state(d: Path) -> tuple[dict, Path]:
    """The training state of checkpoint dir `d`, verified; if `d` is damaged, the newest
    intact earlier checkpoint beside it (`step-*` in the same run directory) is used.
    Returns (state, the directory read: not `d` when it fell back); HybridError if none is
    intact or the file is not a plain training state."""
    candidates = [d] + sorted((p for p in d.parent.glob("step-*")
                               if p != d and 0 <= step_of(p) < step_of(d)), key=step_of, reverse=True)
    for c in candidates:
        if state_intact(c):
            try:
                return torch.load(c / STATE_FILE, map_location="cpu", weights_only=True), c
            except Exception as exc:  # weights_only refuses arbitrary pickled objects
                raise HybridError(f"{c / STATE_FILE}: not a training state written by hybrid "
                                  f"({type(exc).__name__}); refusing to unpickle it") from None
    raise HybridError(f"{d}: checkpoint damaged (state.pt does not match state.sha256) and no intact "
                      f"earlier checkpoint in {d.parent}; remove it to start the run over")


def check_run_checkpoints(run_dir: Path) -> None:
    """Before a run starts its workers: HybridError (the one `read_state` would raise in
    them) when `run_dir` holds checkpoints and none of them is intact, so a run that cannot
    resume fails at once instead of after starting Ray and its workers. Newest first: one
    checksum when the newest is intact."""
    steps = sorted((p for p in run_dir.glob("step-*") if step_of(p) >= 0), key=step_of,
                   reverse=True) if run_dir.is_dir() else []
    if steps and not any(state_intact(p) for p in steps):
        read_state(steps[0])


def pick_checkpoint(given: Path | None, run_dir: Path | None) -> Path | None:
    """The checkpoint to resume from: `given` (e.g. the one Ray hands back), unless
    `run_dir` holds a newer intact one. A worker killed right after persisting a checkpoint
    can die before Ray's controller registers it; that checkpoint is complete (sealed) and
    is used rather than lost."""
    newest = None
    if run_dir is not None and run_dir.is_dir():
        intact = [p for p in run_dir.glob("step-*") if step_of(p) >= 0 and state_intact(p)]
        newest = max(intact, key=step_of, default=None)
    if given is None or (newest is not None and step_of(newest) > step_of(given)):
        return newest
    return given
