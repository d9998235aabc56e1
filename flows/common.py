"""Defaults and helpers shared by the flows: the `benchmarks` parameter (`benchmark_plan`),
the evaluation steps every flow composes the same way, Ray and CPU placement."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from prefect import unmapped

from hybrid.errors import HybridError
from hybrid.evaluation import BENCHMARK_NAMES
from hybrid.raycluster import ensure_ray  # noqa: F401 - the flows' way into Ray, re-exported
from hybrid.train.config import TrainConfig
from tasks.data import download_benchmark, is_remote, prepare_benchmark
from tasks.evaluate import benchmark_task, encode_benchmark_task, evaluation_matrix, mteb_task


def data_dir() -> Path:
    from hybrid.paths import default_data_dir

    d = default_data_dir()
    return d if d is not None else Path("data")


def default_sources() -> list[str]:
    """Training data: the XQuAD-R train split (offline copy when present, else upstream)."""
    local = data_dir() / "lareqa" / "xquad-r"
    return [f"xquad-r:{local}" if local.is_dir() else "xquad-r:upstream"]


def default_benchmarks() -> dict[str, str]:
    out = {}
    for name, sub in (("xquad-r", "xquad-r"), ("mlqa-r", "mlqa-r-sample")):
        local = data_dir() / "lareqa" / sub
        out[name] = str(local) if local.is_dir() else "upstream"
    return out


#: `benchmarks` entries: the LAReQA benchmarks (always evaluated, the promotion gate reads
#: XQuAD-R), every other `hybrid evaluate --benchmark NAME`, and `mteb`.
BENCHMARK_CHOICES = (*BENCHMARK_NAMES, "mteb")
_OPTIONS = {"tatoeba": {"langs", "directions"}, "bitext": {"langs"}, "miracl": {"langs"}}
_NEEDS_SOURCE = {"bitext": "a directory of aligned {lang}.txt files",
                 "trec": "a directory with queries.tsv, corpus.jsonl, qrels.txt"}


@dataclass
class BenchmarkPlan:
    """The `benchmarks` parameter checked and resolved: `lareqa` {name: source} for the
    LAReQA matrix, `extras` one dict per other benchmark (`benchmark`, `source`,
    `languages`, `directions`; mteb: `benchmark`, `tasks`)."""

    lareqa: dict[str, str]
    extras: list[dict] = field(default_factory=list)


def _spec_error(spec: str, problem: str) -> HybridError:
    return HybridError(f"benchmarks: {spec!r}: {problem}")


def parse_benchmark(spec: str) -> dict:
    """One entry `NAME[:SOURCE][?langs=a,b&directions=D]` (module `benchmark_plan`) as a dict;
    HybridError (one line, nothing touched) for anything that cannot run."""
    from hybrid.langs import validate_lang
    from hybrid.spec import parse_options, split_spec

    text = str(spec).strip()
    name, source, query = split_spec(text)
    source, query = source or "", query or ""
    if name not in BENCHMARK_CHOICES:  # checked before the name becomes any path
        where = "" if text == name else f" in {text!r}"
        raise HybridError(f"benchmarks: unknown benchmark {name!r}{where} "
                          f"(choose {', '.join(BENCHMARK_CHOICES)})")
    try:
        options = parse_options(query)
    except ValueError:
        raise _spec_error(text, f"bad options {query!r} (want key=value&...)") from None
    unknown = sorted(set(options) - _OPTIONS.get(name, set()))
    if unknown:
        allowed = ", ".join(sorted(_OPTIONS.get(name, ()))) or "none"
        raise _spec_error(text, f"unknown option(s) {', '.join(unknown)} for {name} (allowed: {allowed})")
    source = source.strip() or None
    if name == "mteb":
        import importlib.util

        from hybrid.evaluation.mteb_adapter import DEFAULT_TASKS

        if importlib.util.find_spec("mteb") is None:
            raise _spec_error(text, "mteb is not installed: pip install 'hybrid-retriever[mteb]'")
        tasks = [t.strip() for t in (source or "").split(",") if t.strip()]
        return {"benchmark": "mteb", "tasks": tasks or list(DEFAULT_TASKS)}
    if name in _NEEDS_SOURCE and source is None:
        raise _spec_error(text, f"{name} needs a source: {name}:DIR ({_NEEDS_SOURCE[name]})")
    if name == "tatoeba" and source is None:
        local = data_dir() / "tatoeba"
        if not local.is_dir():
            raise _spec_error(text, "no offline Tatoeba copy (set HYBRID_DATA or give tatoeba:DIR)")
        source = str(local)
    if name == "miracl" and source is None:
        source = "hub"
    if source and "://" not in source and source not in ("hub", "upstream") \
            and not Path(source).expanduser().exists():
        raise _spec_error(text, f"{source}: no such file or directory")
    langs = None
    if "langs" in options:
        langs = [validate_lang(x.strip(), where=f"benchmarks: {text!r}")
                 for x in options["langs"].split(",") if x.strip()] or None
    if name == "tatoeba" and langs and "en" in langs:
        raise _spec_error(text, "en is the pivot of every Tatoeba pair; leave it out")
    directions = options.get("directions", "xx-en")
    if directions not in ("xx-en", "en-xx", "both"):
        raise _spec_error(text, f"directions must be xx-en, en-xx or both, not {directions!r}")
    return {"benchmark": name, "source": source, "languages": langs, "directions": directions}


def benchmark_plan(benchmarks: list[str] | dict[str, str | None] | None) -> BenchmarkPlan:
    """Check and resolve the flows' `benchmarks` parameter, before anything is written.

    A list of entries `NAME[:SOURCE][?OPTIONS]` (or the mapping {NAME: SOURCE}, the same
    entries): NAME is one of `BENCHMARK_CHOICES`. XQuAD-R and MLQA-R are always evaluated
    (default sources: `default_benchmarks`; an entry gives another source). Every other
    entry is an extra benchmark run as `hybrid evaluate --benchmark NAME` with its own
    defaults: `tatoeba` (offline copy; `?langs=de,zh&directions=xx-en|en-xx|both`),
    `bitext:DIR` (`?langs=`), `miracl[:DIR]` (default the Hub; `?langs=`), `trec:DIR`, and
    `mteb[:TASK,...]` (mteb task names or FILE.py:Class; default `DEFAULT_TASKS`).
    A name may appear once. Raises HybridError naming the bad entry.
    """
    if isinstance(benchmarks, dict):
        specs = [name if src is None or src == "" else f"{name}:{src}"
                 for name, src in benchmarks.items()]
    elif isinstance(benchmarks, str):
        raise HybridError(f"benchmarks: expected a list of entries, not the string {benchmarks!r}")
    else:
        specs = list(benchmarks or [])
    lareqa = default_benchmarks()
    extras, seen = [], set()
    for spec in specs:
        b = parse_benchmark(spec)
        if b["benchmark"] in seen:
            raise HybridError(f"benchmarks: {b['benchmark']} is given twice")
        seen.add(b["benchmark"])
        if b["benchmark"] in lareqa:
            if b["languages"] is not None or b["directions"] != "xx-en":
                raise _spec_error(spec, "LAReQA benchmarks take the flow's languages and "
                                  "eval_splits, no options")
            if b["source"]:
                lareqa[b["benchmark"]] = b["source"]
        else:
            extras.append(b)
    return BenchmarkPlan(lareqa, extras)


def eval_splits_for(eval_splits: dict[str, str] | None) -> dict[str, str]:
    """Per LAReQA benchmark "all" or "heldout"; default XQuAD-R held-out (unseen articles)."""
    return {"xquad-r": "heldout", **(eval_splits or {})}


def prepare_lareqa(lareqa: dict[str, str], results: str) -> dict:
    """Submit download (remote sources) + prepare per LAReQA benchmark; {name: future dir}."""
    out = {}
    for name, src in lareqa.items():
        wait = [download_benchmark.submit(name, src)] if is_remote(src) else None
        out[name] = prepare_benchmark.submit(name, src, results, wait_for=wait)
    return out


def submit_extras(model_dir, extras: list[dict], results: str, shards: int) -> list:
    """Submit one evaluation task per extra benchmark (`benchmark_task`, `mteb_task`);
    their futures, each resolving to {"benchmark", "out", "summary"}."""
    futures = []
    for b in extras:
        if b["benchmark"] == "mteb":
            futures.append(mteb_task.submit(model_dir, b["tasks"], results))
        else:
            futures.append(benchmark_task.submit(model_dir, b["benchmark"], results, b["source"],
                                                 b["languages"], b["directions"], shards))
    return futures


def evaluate_models(model_dirs: list[str], prepared: dict, eval_splits: dict[str, str],
                    languages, results: str, shards: int, extras: list[dict] = ()) -> list[list[dict]]:
    """Evaluate every model: the extra benchmarks submitted first (`submit_extras`), then
    one fan-out encoding every prepared LAReQA benchmark of every model (`.map` over models
    x benchmarks, each `shards` Ray tasks), then their settings matrices. Per model (in
    `model_dirs`' order) its results {"benchmark", "out", "summary"}: LAReQA in `prepared`'s
    order, then the extras in theirs. Raises if any evaluation failed."""
    names = list(prepared)
    dirs = [prepared[n].result() for n in names]
    splits = [eval_splits.get(n, "all") for n in names]
    extra = [submit_extras(md, list(extras), results, shards) for md in model_dirs]
    jobs = [(md, i) for md in model_dirs for i in range(len(names))]
    args = ([md for md, _ in jobs], [names[i] for _, i in jobs], [dirs[i] for _, i in jobs],
            unmapped(results), [splits[i] for _, i in jobs], unmapped(languages))
    encoded = encode_benchmark_task.map(*args, unmapped(max(1, shards)))
    for f in encoded:  # fan-in: every benchmark encoded (raises if one failed)
        f.result()
    matrices = [f.result() for f in evaluation_matrix.map(*args)]
    return [matrices[k * len(names):(k + 1) * len(names)] + [f.result() for f in extra[k]]
            for k in range(len(model_dirs))]


def cpus_for(workers: int) -> int:
    """CPUs per training worker: the connected cluster's CPUs over `workers`, at most the
    largest node's (Ray otherwise gives each worker 1 CPU and torch 1 thread)."""
    import ray

    nodes = [n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")]
    total = int(sum(nodes))
    return max(1, min(int(max(nodes, default=1)), total // max(1, workers)))


def training_overrides(profile: str, overrides: dict | None) -> tuple[dict, TrainConfig]:
    """The flows' training settings: `profile` plus dotted `overrides` (any field of
    `hybrid.train.config`, e.g. {"data.strategy": "x-y", "run.steps": 50}), checked before
    anything runs (HybridError naming the field), with `run.cpus_per_worker` filled from
    the connected Ray cluster when neither sets it (`cpus_for`). Returns (overrides, the
    resolved config)."""
    from hybrid.train.config import resolve

    cfg = resolve(profile, overrides)
    out = {k: v for k, v in (overrides or {}).items() if v is not None}
    if cfg.run.cpus_per_worker is None:
        out["run.cpus_per_worker"] = cpus_for(cfg.run.workers)
        cfg.run.cpus_per_worker = out["run.cpus_per_worker"]
    return out, cfg
