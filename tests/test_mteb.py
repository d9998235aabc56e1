"""The MTEB adapter on locally defined tasks (no download): 'hybrid mteb' writes the main
scores, and mteb's own figures equal this tool's bitext and MIRACL evaluations of the same
data, which checks the prefixes (query / passage / symmetric) the adapter gives mteb."""

import json
from pathlib import Path

import numpy as np
import pytest

from hybrid.cli import main
from hybrid.data.miracl import read_miracl
from hybrid.errors import HybridError
from hybrid.evaluation.bitext import pair_ranks, pool
from hybrid.evaluation.ir import run_metrics
from hybrid.evaluation.mteb_adapter import MtebEncoder, kind_for, parse_tasks
from hybrid.model import make_tiny_model

pytest.importorskip("mteb")
TASKS = Path(__file__).parent / "fixtures" / "mteb" / "local_tasks.py"
FIXTURE = Path(__file__).parent / "fixtures" / "miracl"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny")


def test_prompt_types_map_to_kinds():
    from mteb.types import PromptType

    assert kind_for(PromptType.query) == "query"
    assert kind_for(PromptType.document) == "passage"
    assert kind_for(None) == "query"  # symmetric tasks: the e5 convention


def test_hybrid_mteb_folds_main_scores_and_matches_own_evaluations(tiny, tmp_path, capsys):
    out = tmp_path / "mteb"
    spec = f"{TASKS}:TatoebaDeEnSample,{TASKS}:MiraclDeSample"
    assert main(["mteb", "--model", str(tiny), "--tasks", spec, "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    acc = m["settings"]["TatoebaDeEnSample"]["default/test"]
    ndcg = m["settings"]["MiraclDeSample"]["main_score"]
    assert m["summary"]["all"]["main_score"] == pytest.approx((acc + ndcg) / 2)
    assert m["meta"]["main_score"] == {"TatoebaDeEnSample": "accuracy", "MiraclDeSample": "ndcg_at_10"}
    assert list((out / "mteb").rglob("TatoebaDeEnSample.json"))
    assert "| MiraclDeSample |" in (out / "report.md").read_text()
    assert "mean main score" in capsys.readouterr().out

    # mteb's bitext accuracy = this tool's de->en accuracy@1 on the same 60 lines
    import importlib.util

    spec_ = importlib.util.spec_from_file_location("local_tasks", TASKS)
    mod = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(mod)
    de, en = mod.tatoeba_lines()
    enc = MtebEncoder(str(tiny))
    uniq, gold = pool(en)
    ranks, _, _ = pair_ranks(enc.encoder.encode(de, "query", show_progress=False),
                             enc.encoder.encode(uniq, "query", show_progress=False), gold)
    assert acc == pytest.approx(float(np.mean(ranks == 1)), abs=1e-9)

    # mteb's nDCG@10 on the MIRACL fixture = this tool's (queries "query: ", passages "passage: ")
    (c,) = read_miracl(FIXTURE, ["de"])
    docs = next(c.corpus_chunks(1000))
    q = enc.encoder.encode(c.queries["text"].tolist(), "query", show_progress=False)
    d = enc.encoder.encode(docs["text"].tolist(), "passage", show_progress=False)
    s = (q.astype(np.float64) @ d.astype(np.float64).T).astype(np.float32)
    import pandas as pd

    order = np.argsort(-s, axis=1)
    run = pd.DataFrame({"qid": np.repeat(c.queries["qid"].to_numpy(), len(docs)),
                        "docid": docs["docid"].to_numpy()[order].ravel(),
                        "score": np.take_along_axis(s, order, axis=1).ravel()})
    ours, _, _ = run_metrics(run, c.qrels)
    assert ndcg == pytest.approx(ours["ndcg@10"], abs=1e-4)  # mteb rounds to 5 digits


def test_task_specs_and_errors(tmp_path):
    tasks = parse_tasks(f"{TASKS}:TatoebaDeEnSample, SomeName")
    assert type(tasks[0]).__name__ == "TatoebaDeEnSample" and tasks[1] == "SomeName"
    with pytest.raises(HybridError, match="no such file"):
        parse_tasks(f"{tmp_path}/none.py:X")
    with pytest.raises(HybridError, match="defines no 'Nope'"):
        parse_tasks(f"{TASKS}:Nope")
    assert main(["mteb", "--model", "me5-smal", "--tasks", "x", "--out", str(tmp_path / "o")]) == 2
