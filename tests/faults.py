"""Fault-injection hooks for training tests, named in `run.callbacks` as "faults:fail_once"
and "faults:pause" (tests/ must be on the workers' PYTHONPATH: `worker_path` below).

Each is `fn(trainer, record)` (hybrid.train.core) and acts on the last rank only:
- `fail_once`: $HYBRID_TEST_FAIL_ONCE = "STEP:PATH": raise once after STEP (PATH records it);
- `pause`: $HYBRID_TEST_PAUSE_AT = "STEP:PATH": write the pid to PATH after STEP and sleep (up
  to 10 minutes) to be killed; a restarted worker finds PATH and goes on.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

FAIL_ONCE_ENV = "HYBRID_TEST_FAIL_ONCE"
PAUSE_ENV = "HYBRID_TEST_PAUSE_AT"
TESTS = Path(__file__).resolve().parent


def worker_path(monkeypatch) -> None:
    """Put tests/ on PYTHONPATH so processes started after this (Ray workers) import us."""
    old = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", str(TESTS) + (os.pathsep + old if old else ""))


def _due(trainer, record: dict, env: str) -> Path | None:
    spec = os.environ.get(env)
    if not spec or trainer.comm.rank != trainer.comm.world - 1:
        return None
    at, _, marker = spec.partition(":")
    return Path(marker) if record["step"] == int(at) and not Path(marker).exists() else None


def fail_once(trainer, record: dict) -> None:
    marker = _due(trainer, record, FAIL_ONCE_ENV)
    if marker:
        marker.write_text("failed once\n", encoding="utf-8")
        raise RuntimeError(f"{FAIL_ONCE_ENV}: injected failure after step {record['step']}")


def pause(trainer, record: dict) -> None:
    marker = _due(trainer, record, PAUSE_ENV)
    if marker:
        tmp = marker.with_name(marker.name + ".tmp")
        tmp.write_text(f"{os.getpid()}\n", encoding="utf-8")
        tmp.replace(marker)
        time.sleep(600)
