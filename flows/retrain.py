"""`hybrid-retrain`: scheduled retraining on the latest data (deployment `retrain/weekly`).

Runs the pipeline as a subflow into its own MLflow experiment. The data tasks hash the
sources' content, so new data means new pairs, a new model and a new registry version that
must pass the promotion gate; unchanged data is cache hits and no new version.
"""

from __future__ import annotations

from prefect import flow

from flows.pipeline import pipeline
from tasks.registry import DEFAULT_PROMOTION_METRIC


@flow(name="hybrid-retrain", log_prints=True)
def retrain(
    profile: str = "quick",
    model: str = "me5-small",
    strategy: str = "hybrid",
    alpha: float = 0.5,
    workers: int = 1,
    sources: list[str] | None = None,
    benchmarks: list[str] | dict[str, str | None] | None = None,
    languages: list[str] | None = None,
    promotion_metric: str = DEFAULT_PROMOTION_METRIC,
    promotion_margin: float = 0.005,
    results_dir: str = "runs/pipeline",
    index: dict | None = None,
) -> dict:
    """Retrain from the current sources and gate the result; the parameters are
    `hybrid-pipeline`'s (benchmarks: e.g. ["tatoeba"] adds Tatoeba to the evaluation;
    index: {"corpus": PATH, "dir": DIR} rebuilds the champion's search index when the
    retrained model is promoted)."""
    return pipeline(profile=profile, model=model, strategy=strategy, alpha=alpha,
                    workers=workers, sources=sources, benchmarks=benchmarks, languages=languages,
                    promotion_metric=promotion_metric, promotion_margin=promotion_margin,
                    results_dir=results_dir, experiment="hybrid-retrain", index=index)


if __name__ == "__main__":
    retrain()
