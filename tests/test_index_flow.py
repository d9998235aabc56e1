"""The search index follows the champion, on the session's real stack (Prefect server, MLflow,
Ray, a process worker, `prefect deploy --all`): a promoted version's index is built by the
`hybrid-index/champion` deployment, started through the pipeline's trigger
(`tasks.index.follow_champion`); a real `hybrid serve` on that directory keeps answering a
continuous stream of requests while another version is promoted and its index built, and
then answers from the new version, with no failed request."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from serving import serving

from hybrid.errors import HybridError

NAME = "hybrid-index-test"  # its own registered model: the session's hybrid-retriever gate
METRIC = "xquad_r.mAP.multi"  # stays the pipeline tests'
WORDS = {"en": "river mountain city bread music winter", "de": "Fluss Berg Stadt Brot Musik",
         "es": "río montaña ciudad pan música invierno"}


def _corpus(path: Path) -> Path:
    rows = [{"id": f"{lang}-{i}", "lang": lang,
             "text": f"{' '.join(w.split()[i % 5:] + w.split()[:i % 5])} {i}"}
            for lang, w in WORDS.items() for i in range(12)]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def _log(seed: int, value: float, tmp: Path) -> str:
    """Log the tiny model (seed) under NAME in a run with the gate's metric = `value`; its
    version (not promoted yet)."""
    import mlflow

    from hybrid.model import make_tiny_model
    from tasks.mlflow_registry import log_retriever

    exp = mlflow.set_experiment("test-index-flow")
    with mlflow.start_run(experiment_id=exp.experiment_id):
        mlflow.log_metric(METRIC, value)
        return str(log_retriever(make_tiny_model(tmp / f"model-{seed}", seed=seed),
                                 name=NAME).version)


def _promote(version: str) -> None:
    from tasks.mlflow_registry import promote

    assert promote(version, name=NAME, metric=METRIC).alias == "champion"


class Load:
    """POST /search from a thread until stopped: every answer's registry version, or error."""

    def __init__(self, url: str):
        self.url, self.seen, self.errors = url, [], []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import httpx

        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                try:
                    r = client.post(self.url + "/search", json={"query": "Berg river", "k": 3})
                    if r.status_code != 200 or len(r.json()["results"][0]) != 3:
                        self.errors.append(f"{r.status_code} {r.text[:200]}")
                    else:
                        self.seen.append(r.json()["index"]["registry"]["version"])
                except Exception as exc:  # noqa: BLE001 - every failure is counted
                    self.errors.append(repr(exc))
                time.sleep(0.02)  # a steady stream that leaves the build a core

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=60)


def _info_version(url: str) -> str:
    import httpx

    return str(httpx.get(url + "/info", timeout=10).json()["model"]["registry"]["version"])


@pytest.mark.slow
def test_serve_follows_the_champion_without_dropping_requests(deployed, tmp_path):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from hybrid.model import resolve_model
    from tasks.index import follow_champion, up_to_date

    t0 = time.monotonic()
    phases = {}

    def mark(name):
        phases[name] = round(time.monotonic() - t0, 1)

    corpus = _corpus(tmp_path / "corpus.jsonl")
    index_dir = tmp_path / "index"
    cfg = {"corpus": str(corpus), "dir": str(index_dir), "model": f"models:/{NAME}@champion"}

    def trigger(version: str) -> str | None:
        with temporary_settings({PREFECT_API_URL: deployed.stack.env()["PREFECT_API_URL"]}):
            return follow_champion.fn(cfg, version)

    def build(version: str) -> None:
        run_id = trigger(version)
        assert run_id is not None
        fr = deployed.wait(run_id, timeout=300)
        assert fr.state.is_completed(), f"{fr.state}\n{deployed.worker_log()}"

    v1 = _log(11, 0.50, tmp_path)
    _promote(v1)
    mark("registered v1")
    logged = {}  # the next version is logged while the first index builds
    logger = threading.Thread(target=lambda: logged.update(v2=_log(12, 0.60, tmp_path)))
    logger.start()
    build(v1)
    logger.join(timeout=120)
    v2 = logged["v2"]
    mark("built v1")
    manifest = json.loads((index_dir / "manifest.json").read_text())
    assert manifest["model"]["spec"] == f"models:/{NAME}/{v1}"  # the alias pinned
    assert manifest["model"]["registry"] == {"name": NAME, "version": v1, "alias": "champion"}
    assert manifest["index"]["count"] == 36
    assert trigger(v1) is None  # the directory holds the champion already

    with serving(index_dir) as url, Load(url) as load:
        mark("serving")
        assert _info_version(url) == v1
        _promote(v2)
        assert trigger(v1) is None  # v1 is no longer the champion
        build(v2)
        mark("built v2")
        deadline = time.monotonic() + 30
        while _info_version(url) != v2:
            assert time.monotonic() < deadline, "hybrid serve still on the old index after 30 s"
            time.sleep(0.2)
        n = len(load.seen)
        while len(load.seen) < n + 10:  # answers after the switch
            assert time.monotonic() < deadline + 30 and not load.errors, load.errors[:3]
            time.sleep(0.05)
    mark("done")
    print(f"phases (s): {phases}; {len(load.seen)} answers")
    assert load.errors == [], load.errors[:5]
    assert load.seen[0] == v1 and load.seen[-1] == v2, (load.seen[:3], load.seen[-3:])
    switched = load.seen.index(v2)
    assert set(load.seen[switched:]) == {v2}, "answers went back to the old version"
    assert up_to_date(index_dir, resolve_model(f"models:/{NAME}/{v2}"), corpus, "flat")
    assert not up_to_date(index_dir, resolve_model(f"models:/{NAME}/{v2}"), corpus, "hnsw")
    assert not up_to_date(index_dir, resolve_model(f"models:/{NAME}/{v1}"), corpus, "flat")


def test_pipeline_index_parameter_is_checked():
    from tasks.index import check_index_config

    assert check_index_config(None) is None
    got = check_index_config({"corpus": "c.jsonl", "dir": "idx"})
    assert got == {"corpus": "c.jsonl", "dir": "idx", "kind": "flat",
                   "model": "models:/hybrid-retriever@champion",
                   "deployment": "hybrid-index/champion"}
    for bad in ({"corpus": "c.jsonl"}, {"corpus": "c", "dir": "d", "knd": "flat"}, "idx"):
        with pytest.raises(HybridError, match="index: expected"):
            check_index_config(bad)
