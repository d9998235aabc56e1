"""One home for the pipeline's cached tasks: Prefect's cache key and the task's output
directory come from the same bound arguments.

    @cached_task(_train_key, area=lambda p: Path(p["results_dir"]) / "train", done="train_summary.json",
                 result=_train_result)
    def train_model(profile, overrides, pairs_dir, results_dir, *, out: Path) -> None:
        train(...)  # writes into `out`

- `key(params)` returns the JSON-able facts the output depends on (content hashes of the
  inputs, the library code, the arguments); their `dict_hash` is the task's *key*. Prefect
  caches on it (plus the task's own source, `TASK_SOURCE`), and the output directory is
  `area(params) / key[:16]`: one computation, from the call's parameters with their defaults.
- The body gets that directory as `out` (and the key as `key` if it declares one); it is run
  only when `out / done` is missing, so an output that is complete on disk is used as it is
  even when Prefect's cache record is gone (a cleared Prefect home, an edited task module).
  Library writers publish `done` last (atomically), so a killed body leaves no `done`.
- The task returns `result(params, out)`: small dicts and paths, never big objects.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import TASK_SOURCE, CacheKeyFnPolicy

from tasks.hashing import dict_hash

HIDDEN = ("out", "key")


def bind(signature: inspect.Signature, args: tuple, kwargs: dict) -> dict[str, Any]:
    """The call's parameters by name, defaults included (what Prefect hands a cache key fn)."""
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


def cached_task(key: Callable[[dict], dict], *, area: Callable[[dict], Path] | None = None,
                done: str | None = None, result: Callable[[dict, Path], Any] | None = None,
                prefix: str = "", **options: Any):
    """A Prefect task cached on `prefix + dict_hash(key(params))`; see the module docstring.
    Without `area` the body gets no `out` (its output lives elsewhere, e.g. the embedding
    cache) and its return value is the task's. `options` go to `prefect.task`."""
    def decorate(fn: Callable) -> Any:
        full = inspect.signature(fn)
        public = full.replace(parameters=[p for p in full.parameters.values() if p.name not in HIDDEN])
        if area is not None:  # the body returns nothing; the task, `result`'s value
            public = public.replace(return_annotation=inspect.Signature.empty)

        def task_key(params: dict) -> str:
            return prefix + dict_hash(key({**bind(public, (), params)}))

        @functools.wraps(fn)
        def body(*args: Any, **kwargs: Any) -> Any:
            params = bind(public, args, kwargs)
            k = task_key(params)
            extra: dict[str, Any] = {"key": k} if "key" in full.parameters else {}
            if area is None:
                return fn(**params, **extra)
            out = area(params) / k[len(prefix):][:16]
            if done is None or not (out / done).exists():
                fn(**params, **extra, out=out)
            return result(params, out) if result is not None else str(out)

        body.__signature__ = public  # type: ignore[attr-defined]  # what Prefect sees
        policy = TASK_SOURCE + CacheKeyFnPolicy(cache_key_fn=lambda ctx, p: task_key(p))
        return task(cache_policy=policy, persist_result=True, **options)(body)

    return decorate


def results_path(params: dict) -> str:
    """The results directory of a call, resolved: part of every key, so two results dirs
    never share a cache entry."""
    return str(Path(params["results_dir"]).resolve())
