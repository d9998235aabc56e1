"""The tool's encoders in MTEB (`mteb`, optional extra `hybrid-retriever[mteb]`).

`MtebEncoder(model)` implements mteb's encoder protocol over `hybrid.encoder.BiEncoder`:
`encode(inputs, *, task_metadata, hf_split, hf_subset, prompt_type=None, **kw)` takes
mteb's DataLoader of batches (`batch["text"]`) and returns float32 L2-normalised rows.
Prefixes follow the model directory (`hybrid_encoder.json`): queries
(`prompt_type="query"`) get the query prefix, documents (`"document"`) the passage prefix,
and symmetric tasks (classification, clustering, STS, bitext mining: no prompt type) the
query prefix, the e5 convention. Similarity is cosine (`mteb_model_meta`).

A model directory written by `BiEncoder.save` is also a sentence-transformers directory,
but mteb's ST wrapper looks up a prompt named "document" where the tool's is "passage", so
`SentenceTransformer(DIR)` run by mteb would encode documents without their prefix; use
`MtebEncoder`.

`run_mteb(model, tasks, out)` runs tasks (names for `mteb.get_tasks`, or task objects, e.g.
a locally defined `AbsTask`), and writes `out/mteb/...` (mteb's own result files),
`report.md` and last `metrics.json`: `summary["all"]["main_score"]` = mean of the tasks'
main scores, `settings[task] = {"main_score": mean over its subsets and splits,
"<subset>/<split>": main score, ...}`.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from hybrid.errors import HybridError
from hybrid.evaluation.results import check_out, fmt, write_result
from hybrid.paths import check_data_path

#: The tasks `hybrid mteb` and the flows' `mteb` benchmark run when none are named: MTOP
#: intent and domain classification, XQuAD and MLQA retrieval, Tatoeba bitext mining.
DEFAULT_TASKS = ("MTOPIntentClassification", "MTOPDomainClassification", "XQuADRetrieval",
                 "MLQARetrieval", "Tatoeba")


def _mteb():
    try:
        import mteb
    except ImportError:
        raise HybridError("mteb is not installed: pip install 'hybrid-retriever[mteb]'") from None
    return mteb


def kind_for(prompt_type) -> str:
    """The BiEncoder kind for an mteb prompt type (None: symmetric task -> "query")."""
    value = getattr(prompt_type, "value", prompt_type)
    return "passage" if value == "document" else "query"


class MtebEncoder:
    """mteb's encoder protocol over a BiEncoder (see the module docstring)."""

    def __init__(self, model_name: str, revision: str | None = None, *, device: str | None = None,
                 batch_size: int = 64, bf16: bool = False, **kwargs):
        from hybrid.encoder import BiEncoder
        from hybrid.evaluation.encode import model_fingerprint
        from hybrid.model import resolve_model
        from hybrid.model.baselines import with_baseline_settings

        self.model_dir = resolve_model(with_baseline_settings(model_name))
        self.encoder = BiEncoder.from_pretrained(self.model_dir)
        if device is not None:
            self.encoder.to(device)
        self.batch_size, self.bf16 = int(batch_size), bool(bf16)
        _mteb()
        from mteb.models.model_meta import ModelMeta, ScoringFunction

        name = str(model_name) if str(model_name).count("/") == 1 else f"hybrid/{Path(str(model_name)).name}"
        self.mteb_model_meta = ModelMeta.create_empty({
            "name": name, "revision": revision or model_fingerprint(self.model_dir)[:16],
            "embed_dim": self.encoder.dim, "similarity_fn_name": ScoringFunction.COSINE,
            "framework": ["PyTorch"]})

    def encode(self, inputs, *, task_metadata=None, hf_split=None, hf_subset=None,
               prompt_type=None, **kwargs) -> np.ndarray:
        texts: list[str] = []
        for batch in inputs:
            texts.extend(str(t) for t in batch["text"])
        return self.encoder.encode(texts, kind_for(prompt_type), batch_size=self.batch_size,
                                   bf16=self.bf16, show_progress=False)

    def similarity(self, embeddings1, embeddings2):
        import torch

        a = torch.as_tensor(np.asarray(embeddings1, dtype=np.float32))
        b = torch.as_tensor(np.asarray(embeddings2, dtype=np.float32))
        a = torch.nn.functional.normalize(a.reshape(-1, a.shape[-1]), dim=-1)
        b = torch.nn.functional.normalize(b.reshape(-1, b.shape[-1]), dim=-1)
        return a @ b.T

    def similarity_pairwise(self, embeddings1, embeddings2):
        import torch

        a = torch.nn.functional.normalize(torch.as_tensor(np.asarray(embeddings1, dtype=np.float32)), dim=-1)
        b = torch.nn.functional.normalize(torch.as_tensor(np.asarray(embeddings2, dtype=np.float32)), dim=-1)
        return (a * b).sum(-1)


def parse_tasks(spec: str) -> list:
    """'A,B' -> task names; an item 'FILE.py:Class' -> an instance of that locally defined
    task class (an mteb `AbsTask` subclass) loaded from FILE.py."""
    import importlib.util

    items = [s.strip() for s in spec.split(",") if s.strip()]
    if not items:
        raise HybridError("--tasks: no task given")
    out: list = []
    for item in items:
        if ".py:" not in item:
            out.append(item)
            continue
        path, cls = item.rsplit(":", 1)
        check_data_path(path, what="--tasks")
        if not Path(path).is_file():
            raise HybridError(f"--tasks: {path}: no such file")
        mod_spec = importlib.util.spec_from_file_location(f"hybrid_mteb_{Path(path).stem}", path)
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
        if not hasattr(module, cls):
            raise HybridError(f"--tasks: {path} defines no {cls!r}")
        out.append(getattr(module, cls)())
    return out


def run_mteb(model, tasks, out, *, batch_size: int = 64, bf16: bool = False,
             progress: bool = True) -> dict:
    """Run `tasks` (mteb task names or `AbsTask` objects) with `MtebEncoder(model)`; write
    out/mteb/ (mteb's results), report.md, metrics.json. Returns the metrics dict."""
    mteb = _mteb()
    t0 = time.perf_counter()
    out = check_out(out)
    tasks = list(tasks)
    if not tasks:
        raise HybridError("--tasks: no task given")
    names = [t for t in tasks if isinstance(t, str)]
    objs = [t for t in tasks if not isinstance(t, str)]
    if names:
        try:
            objs += list(mteb.get_tasks(tasks=names))
        except Exception as exc:
            raise HybridError(f"--tasks: {(str(exc).splitlines() or [type(exc).__name__])[0][:200]}") from None
    encoder = MtebEncoder(str(model), batch_size=batch_size, bf16=bf16)
    try:
        result = mteb.evaluate(encoder, objs, cache=mteb.ResultCache(out / "mteb"),
                               overwrite_strategy="always", show_progress_bar=progress,
                               encode_kwargs={"batch_size": batch_size})
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise HybridError(f"mteb: {type(exc).__name__}: {first}") from exc
    settings = {}
    for tr in result.task_results:
        row: dict = {}
        for split, scores in tr.scores.items():
            for s in scores:
                row[f"{s['hf_subset']}/{split}"] = float(s["main_score"])
        vals = list(row.values())
        settings[tr.task_name] = {"main_score": float(np.mean(vals)) if vals else None, **row}
    mains = [v["main_score"] for v in settings.values() if v["main_score"] is not None]
    metrics = {
        "summary": {"all": {"main_score": float(np.mean(mains)) if mains else None}},
        "settings": settings,
        "meta": {"model": str(model), "model_dir": str(encoder.model_dir), "benchmark": "mteb",
                 "mteb_version": mteb.__version__,
                 "main_score": {t.metadata.name: t.metadata.main_score for t in objs},
                 "kinds": {"query": "queries and symmetric tasks", "passage": "documents"},
                 "batch_size": batch_size, "bf16": bf16,
                 "seconds": {"total": round(time.perf_counter() - t0, 3)}},
    }
    write_result(metrics, render_mteb(metrics), out)
    return metrics


def render_mteb(metrics: dict) -> str:
    meta = metrics["meta"]
    lines = [f"# MTEB: {meta['model']}", "", f"- mteb {meta['mteb_version']}; main scores "
             "(x 100); a task's value is the mean over its subsets and splits", "",
             "| task | main score | metric | subsets |", "| --- | ---: | --- | --- |"]
    for task, row in metrics["settings"].items():
        subsets = ", ".join(f"{k} {fmt(v, True)}" for k, v in row.items() if k != "main_score")
        lines.append(f"| {task} | {fmt(row['main_score'], True)} | "
                     f"{meta['main_score'].get(task, '')} | {subsets} |")
    lines.append(f"| **mean** | {fmt(metrics['summary']['all']['main_score'], True)} | | |")
    return "\n".join(lines) + "\n"
